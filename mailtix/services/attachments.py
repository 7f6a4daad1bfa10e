"""Attachment files, stored content-addressed under `tickets.attachment_dir`.

A file is written (atomically, fsynced) before the transaction that records
it commits; if that transaction rolls back, the file is an orphan that a
later identical attachment reuses — never a row pointing at nothing.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def path_for(root: Path, sha256: str) -> Path:
    """Where the file with this hash lives."""
    return root / sha256[:2] / sha256


def save(root: Path, payload: bytes) -> str:
    """Store payload under its SHA-256 (once); return the hash."""
    digest = hashlib.sha256(payload).hexdigest()
    final = path_for(root, digest)
    if final.exists():
        return digest
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{digest}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    return digest
