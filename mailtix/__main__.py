"""`python -m mailtix` is the `mailtix` command."""

from mailtix.cli import main

main()
