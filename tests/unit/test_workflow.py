"""Status transitions caused by mail."""

from mailtix.core import workflow


def test_customer_reply_reopens_pending_and_resolved_only() -> None:
    """A reply reopens pending/resolved tickets and leaves new/open ones alone."""
    got = {s: workflow.after_customer_reply(s) for s in ("new", "open", "pending", "resolved")}
    assert got == {"new": "new", "open": "open", "pending": "open", "resolved": "open"}


def test_agent_answer_opens_a_new_ticket() -> None:
    """The first agent answer moves new → open and changes nothing else."""
    assert workflow.after_agent_answer("new") == "open"
    assert workflow.after_agent_answer("pending") == "pending"
