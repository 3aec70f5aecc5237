"""Control-plane state behind one interface (``Store``), with SQLite as the embedded default."""

from control_plane.store.base import Lease, Record, Session, Store, Transaction, open_store

__all__ = ["Lease", "Record", "Session", "Store", "Transaction", "open_store"]
