"""First-start bootstrap: an admin API key written to ``<data-dir>/admin.key`` (mode 0600).

The secret goes only to that file, never to a log line. If the file exists but its key is
unknown to the store (the database was replaced) and no admin key is left, a new one replaces it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from control_plane.auth.secrets import parse_key
from control_plane.core.keys import key_valid_at
from control_plane.services.keys import create_key
from control_plane.store import Store
from floe.files import write_private_file
from floe.v1 import common_pb2, keys_pb2

__all__ = ["ensure_admin_key"]

log = logging.getLogger(__name__)


async def _has_active_admin(store: Store) -> bool:
    now = time.time_ns()
    after = ""
    while True:
        rows = await store.list("keys", parent="", after=after, limit=500)
        for r in rows:
            key = keys_pb2.ApiKey.FromString(r.body)
            if key.role == common_pb2.ROLE_ADMIN and key_valid_at(key, now):
                return True
        if len(rows) < 500:
            return False
        after = rows[-1].name


def _read_key_file(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


async def ensure_admin_key(store: Store, path: Path) -> bool:
    """Create the bootstrap admin key when needed; returns whether one was written."""
    existing = _read_key_file(path)  # a few bytes at start-up, before serving
    if existing is not None:
        parsed = parse_key(existing)
        if parsed is not None and await store.get(f"keys/{parsed.key_id}") is not None:
            return False
        if await _has_active_admin(store):
            log.warning("The admin key file does not match any key; leaving it alone", extra={"path": str(path)})
            return False
    elif await store.count("keys") > 0:
        log.warning(
            "The admin key file is missing and keys exist; not creating another. Use an existing admin credential.",
            extra={"path": str(path)},
        )
        return False
    key = keys_pb2.ApiKey(display_name="bootstrap admin", kind=keys_pb2.KEY_KIND_USER, role=common_pb2.ROLE_ADMIN)
    record, secret = await create_key(store, key)
    write_private_file(path, (secret + "\n").encode())
    log.info("Bootstrap admin key created", extra={"key": record.name, "path": str(path)})
    return True
