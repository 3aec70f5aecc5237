"""Where the proxy's inputs hand their records: the contract between the input plugins
(``agents/proxy/inputs``) and the forwarding path (batching, compression, spool, receivers).

Records cross it as NDJSON, one JSON object per line, each line ending in ``\\n``, in whole
buffers (an input encodes a whole received batch at once, never one call per record).
"""

from __future__ import annotations

from typing import Protocol

from floe.v1 import datasets_pb2

__all__ = ["Sink", "SinkRefused"]


class SinkRefused(Exception):
    """The forwarding path cannot take more now (its disk spool is full). The message says why."""


class Sink(Protocol):
    def submit(self, dataset: datasets_pb2.Dataset, records: bytes, count: int) -> bool:
        """Add ``count`` NDJSON records to ``dataset``'s open batch without waiting.

        Returns False when refused (the spool is full and the in-memory buffer at its limit);
        the input counts the records as dropped (UDP, NATS without ack) or pushes back (TCP).
        Buffered records become durable within the dataset's batch max age.
        """
        ...

    async def submit_durable(self, dataset: datasets_pb2.Dataset, records: bytes, count: int) -> None:
        """Add records and return once the batch holding them is in the disk spool, for inputs
        that acknowledge their sender (HTTP webhook). Raises ``SinkRefused`` when the spool is full.
        """
        ...
