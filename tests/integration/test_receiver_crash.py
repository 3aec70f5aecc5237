"""Acknowledged means stored: a client posts numbered batches as fast as it can (retrying each
with the same batch id until it gets a 2xx, as a proxy does) while the test kill -9s and restarts
the receiver several times. Afterwards every acknowledged batch is in object storage exactly
once: no loss across crashes, and no second copy under another name."""

from __future__ import annotations

import gzip
import random
import re
import socket
import threading
import time
from collections import Counter
from pathlib import Path

from tests.helpers import eventually
from tests.integration.test_receiver_ingest import Site, body_of, figure, objects, post, site

__all__ = ["site"]  # the fixture, imported so pytest finds it

CLIENTS = 4
ROUNDS = 4


def batch_body(n: int) -> bytes:
    return gzip.compress(b"".join(b'{"batch": %d, "line": %d}\n' % (n, i) for i in range(1 + n % 50)), 1)


class Poster:
    """``CLIENTS`` threads posting batches 0, 1, 2... each until acknowledged."""

    def __init__(self, site: Site, address: str) -> None:
        self.site = site
        self.address = address
        self.acked: set[int] = set()
        self.failures = 0
        self._next = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CLIENTS)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                n, self._next = self._next, self._next + 1
            headers = {
                **self.site.auth(),
                "Content-Encoding": "gzip",
                "X-Floe-Batch-Id": f"crash-{n}",
                "X-Floe-Created-At": str(time.time_ns()),
                "X-Floe-Record-Count": str(1 + n % 50),
            }
            body = batch_body(n)
            while not self._stop.is_set():
                try:
                    status, _, _ = post(self.address, f"/{self.site.tenant}/logs", body, headers, timeout=5)
                except (OSError, ValueError):  # refused, reset or cut short by the kill
                    status = 0
                if 200 <= status < 300:
                    with self._lock:
                        self.acked.add(n)
                    break
                self.failures += 1
                time.sleep(0.02)


def test_every_acked_batch_is_stored_exactly_once_across_kill_9(site: Site, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rcv = site.receiver("rcv-crash", "--webhook-listen", f"127.0.0.1:{port}")
    hook = site.wait_configured(rcv)
    root = site.tmp / "objects"
    poster = Poster(site, hook)
    poster.start()
    rng = random.Random()
    try:
        for _ in range(ROUNDS):
            target = poster.count() + rng.randint(20, 80)
            eventually(lambda target=target: poster.count() >= target, timeout=30)  # type: ignore[misc]
            rcv.kill()
            time.sleep(rng.uniform(0, 0.3))  # clients keep trying against a dead port
            rcv.start()
        target = poster.count() + 20
        eventually(lambda: poster.count() >= target, timeout=30)
    finally:
        poster.stop()
    assert poster.failures > 0  # the kills were noticed

    acked = set(poster.acked)
    eventually(lambda: figure(rcv, "spool", "backlog") == 0, timeout=60)
    stored: Counter[int] = Counter()
    names: Counter[str] = Counter()
    for key, path in objects(root, site.tenant).items():
        numbers = {int(m) for m in re.findall(rb'"batch": (\d+)', body_of(path))}
        if not numbers:  # wait_configured's probe batch
            continue
        assert len(numbers) == 1, key
        n = numbers.pop()
        stored[n] += 1
        names[key] += 1
    missing = acked - set(stored)
    assert not missing, f"{len(missing)} acknowledged batches were lost: {sorted(missing)[:20]}"
    twice = {n: c for n, c in stored.items() if c > 1}
    assert not twice, f"batches stored more than once: {twice}"
    # Anything stored beyond the acks is a batch whose ack the kill cut off (the client retried it).
    assert set(stored) - acked <= set(range(max(acked) + CLIENTS + 1))
    assert len(acked) >= 100 and figure(rcv, "spool", "dlq_size") == 0
