"""Control-plane state behind one interface (``Store``), with SQLite as the embedded default."""

from control_plane.store.base import Record, Session, Store, Transaction, open_store

__all__ = ["Record", "Session", "Store", "Transaction", "open_store"]
