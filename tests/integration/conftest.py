"""Integration tests: one edge of mailtix against a real server started by the tests."""

# The Dovecot fixtures, imported so pytest sees them here (pytest_plugins is
# only allowed in the rootdir's conftest).
from tests.integration.dovecot import dovecot, dovecot_server, imap_user  # noqa: F401
