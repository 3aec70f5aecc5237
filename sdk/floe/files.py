"""Small files that must never be seen half-written: keys, signing keys, cached configs."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["write_private_file"]


def write_private_file(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably, readable only by the owner (0600).

    Writes a temporary file beside it, fsyncs it, renames it over ``path`` and fsyncs the
    directory, so a crash leaves either the old content or the new, never a mix.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
