"""SQLite store: the embedded default, one file under the data dir.

Writes run on one dedicated thread holding the write connection, one transaction at a time
(``BEGIN IMMEDIATE``, so a second process on the same file waits instead of corrupting).
Lists run on a small pool of reader threads with their own connections. Point reads by primary
key run on the event loop itself: in WAL mode they never wait for writers and take ~5 us from
the page cache, while a thread-pool round trip costs ~30 us of CPU and a GIL hand-off (see
docs/benchmarks.md). Their connection has a 50 ms busy timeout; on the rare SQLITE_BUSY (a
checkpoint rebuilding the WAL index) the read is retried on the pool instead.
"""

from __future__ import annotations

import asyncio
import builtins
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from control_plane.core.errors import Aborted, AlreadyExists, NotFound
from control_plane.store.base import Lease, Record, Session, Transaction

__all__ = ["SqliteStore"]

T = TypeVar("T")
_COLUMNS = "name, collection, parent, body, revision, create_time, update_time, last_used_time"
_GET_WITH_CREDENTIAL = (
    f"SELECT {', '.join('r.' + c.strip() for c in _COLUMNS.split(','))}, k.hash "
    "FROM resources r JOIN credentials k ON k.name = r.name WHERE r.name = ?"
)


_record = Record._make


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (comment lines dropped; no ';' inside literals)."""
    text = "\n".join(line for line in script.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in text.split(";") if s.strip()]


def migrations() -> list[tuple[int, str]]:
    """The versioned migration scripts, in order: ``NNNN_description.sql``."""
    folder = resources.files("control_plane.store") / "migrations"
    out = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            out.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(out)


class SqliteStore:
    """A ``Store`` on one SQLite file."""

    def __init__(self, path: Path, *, readers: int = 2) -> None:
        self.path = path
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="floe-sqlite-w")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="floe-sqlite-r")
        self._local = threading.local()
        self._write_conn: sqlite3.Connection | None = None
        self._loop_conn: sqlite3.Connection | None = None
        self._tx_lock = asyncio.Lock()
        self._all_conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._listeners: list[Callable[[frozenset[str]], None]] = []

    # -- connections -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 10000")
        # FULL: a write the API acknowledged survives power loss, not only a process crash.
        conn.execute("PRAGMA synchronous = FULL")
        with self._conns_lock:
            self._all_conns.append(conn)
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: fn(self._reader()))

    async def _point_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A primary-key read on the loop's own connection; on SQLITE_BUSY, on the pool."""
        conn = self._loop_conn
        if conn is not None:
            try:
                return fn(conn)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
        return await self._read(fn)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the write connection, never inside another caller's open transaction
        (whose rollback would undo it): it waits for that transaction to end."""
        async with self._tx_lock:
            return await self._on_writer(fn)

    async def _on_writer(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the write connection as it is: only for the transaction holding ``_tx_lock``."""
        assert self._write_conn is not None, "store is not open"
        conn = self._write_conn
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, lambda: fn(conn))

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        self._write_conn = await loop.run_in_executor(self._writer, self._connect)
        await self._write(self._migrate)
        self._loop_conn = self._connect()
        self._loop_conn.execute("PRAGMA busy_timeout = 50")

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_time INTEGER NOT NULL)"
        )
        conn.execute("BEGIN IMMEDIATE")
        try:
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for version, script in migrations():
                if version in done:
                    continue
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, time.time_ns()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._conns_lock:
            for conn in self._all_conns:
                conn.close()
            self._all_conns.clear()

    async def ping(self) -> None:
        await self._read(lambda c: c.execute("SELECT 1").fetchone())

    async def schema_version(self) -> int:
        row = await self._read(lambda c: c.execute("SELECT max(version) FROM schema_migrations").fetchone())
        return int(row[0] or 0)

    # -- reads -------------------------------------------------------------------------------

    async def get(self, name: str) -> Record | None:
        row = await self._point_read(
            lambda c: c.execute(f"SELECT {_COLUMNS} FROM resources WHERE name = ?", (name,)).fetchone()
        )
        return _record(row) if row else None

    async def get_with_credential(self, name: str) -> tuple[Record, str] | None:
        row = await self._point_read(lambda c: c.execute(_GET_WITH_CREDENTIAL, (name,)).fetchone())
        return (_record(row[:-1]), row[-1]) if row else None

    async def list_with_credentials(self, collection: str) -> builtins.list[tuple[Record, str]]:
        sql = _GET_WITH_CREDENTIAL.replace("WHERE r.name = ?", "WHERE r.collection = ? ORDER BY r.name")
        rows = await self._read(lambda c: c.execute(sql, (collection,)).fetchall())
        return [(_record(r[:-1]), r[-1]) for r in rows]

    async def list(self, collection: str, *, parent: str | None, after: str, limit: int) -> list[Record]:
        if parent is None:
            sql = f"SELECT {_COLUMNS} FROM resources WHERE collection = ? AND name > ? ORDER BY name LIMIT ?"
            args: tuple[Any, ...] = (collection, after, limit)
        else:
            sql = (
                f"SELECT {_COLUMNS} FROM resources WHERE collection = ? AND parent = ? AND name > ? "
                "ORDER BY name LIMIT ?"
            )
            args = (collection, parent, after, limit)
        rows = await self._read(lambda c: c.execute(sql, args).fetchall())
        return [_record(r) for r in rows]

    async def count(self, collection: str) -> int:
        row = await self._read(
            lambda c: c.execute("SELECT count(*) FROM resources WHERE collection = ?", (collection,)).fetchone()
        )
        return int(row[0])

    # -- writes ------------------------------------------------------------------------------

    async def touch(self, name: str, when: int) -> None:
        await self._write(lambda c: c.execute("UPDATE resources SET last_used_time = ? WHERE name = ?", (when, name)))

    def add_listener(self, callback: Callable[[frozenset[str]], None]) -> None:
        self._listeners.append(callback)

    def _notify(self, collections: frozenset[str]) -> None:
        for callback in self._listeners:
            callback(collections)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._tx_lock:
            await self._on_writer(lambda c: c.execute("BEGIN IMMEDIATE"))
            tx = _SqliteTransaction(self)
            try:
                yield tx
            except BaseException:
                await asyncio.shield(self._on_writer(lambda c: c.execute("ROLLBACK")))
                raise
            else:
                await asyncio.shield(self._on_writer(lambda c: c.execute("COMMIT")))
        if tx.changed:
            self._notify(frozenset(tx.changed))

    # -- work leases -------------------------------------------------------------------------

    async def claim_work(
        self, items: Sequence[str], holder: str, ttl_ns: int
    ) -> tuple[builtins.list[Lease], builtins.list[str]]:
        def run(c: sqlite3.Connection) -> tuple[list[Lease], list[str]]:
            now = time.time_ns()
            won: list[Lease] = []
            done: list[str] = []
            c.execute("BEGIN IMMEDIATE")
            try:
                for item in items:
                    row = c.execute(
                        "SELECT generation, expire_time, state FROM leases WHERE item = ?", (item,)
                    ).fetchone()
                    if row is None:
                        generation = 1
                        c.execute(
                            "INSERT INTO leases VALUES (?, ?, ?, ?, 'held', ?)", (item, holder, 1, now + ttl_ns, now)
                        )
                    elif row[2] == "done":
                        done.append(item)
                        continue
                    elif row[2] == "held" and row[1] > now:
                        continue
                    else:
                        generation = row[0] + 1
                        c.execute(
                            "UPDATE leases SET holder = ?, generation = ?, expire_time = ?, state = 'held', "
                            "update_time = ? WHERE item = ?",
                            (holder, generation, now + ttl_ns, now, item),
                        )
                    won.append(Lease(item, holder, generation, now + ttl_ns))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            return won, done

        return await self._write(run)

    def _held(self, c: sqlite3.Connection, item: str, holder: str, generation: int, now: int) -> None:
        row = c.execute("SELECT holder, generation, expire_time, state FROM leases WHERE item = ?", (item,)).fetchone()
        if row is None or row[3] != "held" or row[0] != holder or row[1] != generation:
            raise Aborted(f"{item}: the lease is not held by {holder} at generation {generation}.", reason="LEASE_LOST")
        if row[2] <= now:
            raise Aborted(f"{item}: the lease expired; claim the item again.", reason="LEASE_EXPIRED")

    async def renew_lease(self, item: str, holder: str, generation: int, ttl_ns: int) -> Lease:
        def run(c: sqlite3.Connection) -> Lease:
            now = time.time_ns()
            c.execute("BEGIN IMMEDIATE")
            try:
                self._held(c, item, holder, generation, now)
                c.execute(
                    "UPDATE leases SET expire_time = ?, update_time = ? WHERE item = ?", (now + ttl_ns, now, item)
                )
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            return Lease(item, holder, generation, now + ttl_ns)

        return await self._write(run)

    async def finish_lease(self, item: str, holder: str, generation: int, *, done: bool) -> None:
        def run(c: sqlite3.Connection) -> None:
            now = time.time_ns()
            c.execute("BEGIN IMMEDIATE")
            try:
                self._held(c, item, holder, generation, now)
                c.execute(
                    "UPDATE leases SET state = ?, expire_time = ?, update_time = ? WHERE item = ?",
                    ("done" if done else "released", now, now, item),
                )
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

        await self._write(run)

    async def prune_leases(self, before_ns: int, limit: int) -> int:
        def run(c: sqlite3.Connection) -> int:
            # One statement (autocommit): atomic against claims on the writer thread. The
            # (state, update_time) index finds the rows.
            cursor = c.execute(
                "DELETE FROM leases WHERE item IN (SELECT item FROM leases WHERE state IN ('done', 'released') "
                "AND update_time < ? LIMIT ?)",
                (before_ns, limit),
            )
            return cursor.rowcount

        return await self._write(run)

    async def prune_sessions(self, before_ns: int) -> int:
        def run(c: sqlite3.Connection) -> int:
            cursor = c.execute(
                "DELETE FROM sessions WHERE expire_time < ? OR (revoke_time != 0 AND revoke_time < ?)",
                (before_ns, before_ns),
            )
            return cursor.rowcount

        return await self._write(run)

    async def create_session(self, session: Session) -> None:
        await self._write(
            lambda c: c.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
                (
                    session.id,
                    session.user,
                    session.token_hash,
                    session.create_time,
                    session.expire_time,
                    session.revoke_time,
                ),
            )
        )

    async def get_session(self, session_id: str) -> Session | None:
        row = await self._point_read(
            lambda c: c.execute(
                "SELECT id, user_name, token_hash, create_time, expire_time, revoke_time FROM sessions WHERE id = ?",
                (session_id,),
            ).fetchone()
        )
        return Session(*row) if row else None

    async def revoke_session(self, session_id: str, when: int) -> None:
        await self._write(
            lambda c: c.execute(
                "UPDATE sessions SET revoke_time = ? WHERE id = ? AND revoke_time = 0", (when, session_id)
            )
        )

    async def revoke_user_sessions(self, user: str, when: int) -> None:
        await self._write(
            lambda c: c.execute(
                "UPDATE sessions SET revoke_time = ? WHERE user_name = ? AND revoke_time = 0", (when, user)
            )
        )


class _SqliteTransaction:
    """Statements of one ``BEGIN IMMEDIATE`` transaction, run on the writer thread."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        #: Collections written in this transaction, announced to listeners after commit.
        self.changed: set[str] = set()

    async def get(self, name: str) -> Record | None:
        row = await self._store._on_writer(
            lambda c: c.execute(f"SELECT {_COLUMNS} FROM resources WHERE name = ?", (name,)).fetchone()
        )
        return _record(row) if row else None

    async def list_all(self, collection: str, parent: str | None = None) -> list[Record]:
        args: tuple[str, ...]
        if parent is None:
            sql, args = f"SELECT {_COLUMNS} FROM resources WHERE collection = ? ORDER BY name", (collection,)
        else:
            sql = f"SELECT {_COLUMNS} FROM resources WHERE collection = ? AND parent = ? ORDER BY name"
            args = (collection, parent)
        rows = await self._store._on_writer(lambda c: c.execute(sql, args).fetchall())
        return [_record(r) for r in rows]

    async def create(
        self, name: str, collection: str, parent: str, body: bytes, *, credential: str | None = None
    ) -> Record:
        now = time.time_ns()

        def run(c: sqlite3.Connection) -> Record:
            try:
                c.execute(
                    "INSERT INTO resources (name, collection, parent, body, revision, create_time, update_time) "
                    "VALUES (?, ?, ?, ?, 1, ?, ?)",
                    (name, collection, parent, body, now, now),
                )
            except sqlite3.IntegrityError as exc:
                raise AlreadyExists(f"{name} already exists.") from exc
            if credential is not None:
                c.execute("INSERT INTO credentials (name, hash) VALUES (?, ?)", (name, credential))
            return Record(name, collection, parent, body, 1, now, now)

        record = await self._store._on_writer(run)
        self.changed.add(collection)
        return record

    async def update(
        self, name: str, body: bytes, *, expected_revision: int | None = None, parent: str | None = None
    ) -> Record:
        now = time.time_ns()

        def run(c: sqlite3.Connection) -> Record:
            row = c.execute(f"SELECT {_COLUMNS} FROM resources WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"{name} does not exist.")
            current = _record(row)
            if expected_revision is not None and expected_revision != current.revision:
                raise Aborted(f"{name} was changed by someone else (etag is stale): read it again and retry.")
            new_parent = current.parent if parent is None else parent
            c.execute(
                "UPDATE resources SET body = ?, revision = revision + 1, update_time = ?, parent = ? WHERE name = ?",
                (body, now, new_parent, name),
            )
            return Record(
                name,
                current.collection,
                new_parent,
                body,
                current.revision + 1,
                current.create_time,
                now,
                current.last_used_time,
            )

        record = await self._store._on_writer(run)
        self.changed.add(record.collection)
        return record

    async def delete(self, name: str, *, expected_revision: int | None = None) -> None:
        def run(c: sqlite3.Connection) -> str:
            row = c.execute("SELECT revision, collection FROM resources WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"{name} does not exist.")
            if expected_revision is not None and expected_revision != row[0]:
                raise Aborted(f"{name} was changed by someone else (etag is stale): read it again and retry.")
            c.execute("DELETE FROM resources WHERE name = ?", (name,))
            return str(row[1])

        self.changed.add(await self._store._on_writer(run))

    async def delete_children(self, collection: str, parent: str) -> int:
        cur = await self._store._on_writer(
            lambda c: c.execute("DELETE FROM resources WHERE collection = ? AND parent = ?", (collection, parent))
        )
        if cur.rowcount:
            self.changed.add(collection)
        return int(cur.rowcount)

    async def set_credential(self, name: str, credential: str) -> None:
        await self._store._on_writer(
            lambda c: c.execute(
                "INSERT INTO credentials (name, hash) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET hash = excluded.hash",
                (name, credential),
            )
        )
