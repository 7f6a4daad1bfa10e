"""Integration tests: one edge of mailtix against a real server started by the tests."""

pytest_plugins = ["tests.integration.dovecot"]
