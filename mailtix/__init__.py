"""mailtix: a helpdesk run entirely by email."""

__version__ = "0.1.0"
