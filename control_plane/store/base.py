"""The store interface. Resources are kept as serialized protobuf bodies with a revision (the
etag source) and their parent; credentials (argon2 hashes) are kept beside them and never leave
the store except to the authenticator. An implementation must make every write of a
``transaction()`` atomic, with etag checks inside the same transaction."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

__all__ = ["Lease", "Record", "Session", "Store", "Transaction", "open_store"]


class Record(NamedTuple):
    """One stored resource (a NamedTuple: built for every row read, so it must be cheap)."""

    name: str
    collection: str
    #: ``tenants/{t}`` for tenant-scoped resources, ``""`` otherwise.
    parent: str
    body: bytes
    revision: int
    create_time: int
    update_time: int
    #: Nanoseconds; only keys track it. 0 when never used.
    last_used_time: int = 0


@dataclass(frozen=True)
class Lease:
    """A claim on a work item until ``expire_time`` (unix nanoseconds)."""

    item: str
    holder: str
    generation: int
    expire_time: int


@dataclass(frozen=True)
class Session:
    """A refresh-token session of a signed-in user."""

    id: str
    user: str
    token_hash: str
    create_time: int
    expire_time: int
    revoke_time: int


class Transaction(Protocol):
    """Reads and writes that commit together. Raises the core errors NotFound/AlreadyExists/Aborted."""

    async def get(self, name: str) -> Record | None: ...

    async def list_all(self, collection: str, parent: str | None = None) -> list[Record]: ...

    async def create(
        self, name: str, collection: str, parent: str, body: bytes, *, credential: str | None = None
    ) -> Record: ...

    async def update(
        self, name: str, body: bytes, *, expected_revision: int | None = None, parent: str | None = None
    ) -> Record: ...

    async def delete(self, name: str, *, expected_revision: int | None = None) -> None: ...

    async def delete_children(self, collection: str, parent: str) -> int: ...

    async def set_credential(self, name: str, credential: str) -> None: ...


class Store(Protocol):
    """Control-plane state. ``open`` applies pending migrations; methods may be called concurrently."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise when the store cannot serve reads."""

    async def get(self, name: str) -> Record | None: ...

    async def get_with_credential(self, name: str) -> tuple[Record, str] | None: ...

    async def list_with_credentials(self, collection: str) -> builtins.list[tuple[Record, str]]:
        """Every record of ``collection`` that has a credential, with its hash (for receivers)."""

    async def list(self, collection: str, *, parent: str | None, after: str, limit: int) -> list[Record]:
        """Records of a collection ordered by name, after ``after``; ``parent`` None means any."""

    async def count(self, collection: str) -> int: ...

    async def touch(self, name: str, when: int) -> None:
        """Record last use of a key without changing its revision."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...

    async def create_session(self, session: Session) -> None: ...

    async def get_session(self, session_id: str) -> Session | None: ...

    async def revoke_session(self, session_id: str, when: int) -> None: ...

    async def revoke_user_sessions(self, user: str, when: int) -> None: ...

    async def schema_version(self) -> int: ...

    def add_listener(self, callback: Callable[[frozenset[str]], None]) -> None:
        """Call ``callback`` with the collections a committed transaction changed."""

    async def claim_work(
        self, items: Sequence[str], holder: str, ttl_ns: int
    ) -> tuple[builtins.list[Lease], builtins.list[str]]:
        """Lease every listed item that is free, released, or whose lease expired.

        Returns the leases won and the items already done, atomically.
        """

    async def renew_lease(self, item: str, holder: str, generation: int, ttl_ns: int) -> Lease:
        """Extend a lease still held by ``holder`` at ``generation``; Aborted otherwise."""

    async def finish_lease(self, item: str, holder: str, generation: int, *, done: bool) -> None:
        """End a lease, marking the item done or released; Aborted if not held by the caller."""

    async def prune_leases(self, before_ns: int, limit: int) -> int:
        """Forget up to ``limit`` finished (done or released) leases last changed before
        ``before_ns``; held ones are never touched. Returns how many were deleted."""

    async def prune_sessions(self, before_ns: int) -> int:
        """Delete sign-in sessions that expired or were revoked before ``before_ns``."""


def open_store(url: str, data_dir: Path) -> Store:
    """Build the store for ``url``.

    ``sqlite:///control-plane.db`` is relative to ``data_dir``; ``sqlite:////var/lib/floe/cp.db``
    is absolute.
    """
    if url.startswith("sqlite:///"):
        from control_plane.store.sqlite import SqliteStore

        raw = url.removeprefix("sqlite:///")
        if not raw:
            raise ValueError(f"store URL {url!r} has no path; use sqlite:///control-plane.db")
        path = Path(raw)
        return SqliteStore(path if path.is_absolute() else data_dir / path)
    raise ValueError(f"store URL {url!r} is not supported; use sqlite:///FILE (PostgreSQL is planned)")
