"""Housekeeping deletes finished work leases after their retention and ended sign-in sessions,
never a held lease, a recent one or a live session; a control plane runs it on its own."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from control_plane import housekeeping
from control_plane.housekeeping import Housekeeper
from control_plane.store import open_store
from control_plane.store.base import Session
from floe import Client
from floe.v1 import common_pb2, keys_pb2
from tests.helpers import ControlPlaneProcess, eventually

HOUR = 3600 * 10**9


def test_finished_leases_past_retention_and_ended_sessions_are_deleted(tmp_path: Path) -> None:
    async def main() -> None:
        store = open_store("sqlite:///cp.db", tmp_path)
        await store.open()
        try:
            now = time.time_ns()
            won, _ = await store.claim_work(["done-old", "released-old", "held", "done-too"], "piper-a", HOUR)
            lease = {w.item: w for w in won}
            for item, finished in (("done-old", True), ("released-old", False), ("done-too", True)):
                await store.finish_lease(item, "piper-a", lease[item].generation, done=finished)
            for sid, expire, revoke in (
                ("live", now + HOUR, 0),
                ("expired", now - 1, 0),
                ("revoked", now + HOUR, now - 1),
            ):
                await store.create_session(Session(sid, "users/ann", "h", now - HOUR, expire, revoke))

            # Everything finished counts as old against a cutoff in the future; the held lease stays.
            keeper = Housekeeper(store, lease_retention=1e-9, interval=3600)
            before = housekeeping.PRUNED.labels("lease")._value.get()
            assert await keeper.run_once() == (3, 2)
            assert housekeeping.PRUNED.labels("lease")._value.get() - before == 3
            # A pruned done item can be claimed again; the held one still cannot.
            won, already = await store.claim_work(["done-old", "held"], "piper-b", HOUR)
            assert [w.item for w in won] == ["done-old"] and won[0].generation == 1 and not already
            assert await store.get_session("live") is not None
            assert await store.get_session("expired") is None and await store.get_session("revoked") is None

            # Within the retention nothing finished is deleted; 0 keeps leases forever.
            await store.finish_lease("done-old", "piper-b", 1, done=True)
            assert await Housekeeper(store, lease_retention=3600, interval=3600).run_once() == (0, 0)
            assert await Housekeeper(store, lease_retention=0, interval=3600).run_once() == (0, 0)
            _, already = await store.claim_work(["done-old"], "piper-c", HOUR)
            assert already == ["done-old"]
        finally:
            await store.close()

    asyncio.run(main())


def test_pruning_goes_in_batches_until_nothing_is_left(tmp_path: Path) -> None:
    async def main() -> None:
        store = open_store("sqlite:///cp.db", tmp_path)
        await store.open()
        try:
            items = [f"pipe/{i}" for i in range(23)]
            won, _ = await store.claim_work(items, "p", HOUR)
            for w in won:
                await store.finish_lease(w.item, "p", w.generation, done=True)
            calls: list[int] = []
            real = store.prune_leases

            async def counting(before_ns: int, limit: int) -> int:
                deleted = await real(before_ns, limit)
                calls.append(deleted)
                return deleted

            store.prune_leases = counting  # type: ignore[method-assign]
            housekeeping._BATCH, saved = 10, housekeeping._BATCH
            try:
                assert await Housekeeper(store, lease_retention=1e-9, interval=3600).run_once() == (23, 0)
            finally:
                housekeeping._BATCH = saved
            assert calls == [10, 10, 3]
        finally:
            await store.close()

    asyncio.run(main())


def test_a_control_plane_runs_housekeeping_by_itself(start_control_plane: Callable[..., ControlPlaneProcess]) -> None:
    cp = start_control_plane("--lease-retention", "1s", "--housekeeping-interval", "1s")
    with Client(cp.grpc, api_key=cp.admin_key, retries=0, timeout=5) as admin:
        _, agent_key = admin.keys.create(common_pb2.ROLE_AGENT, kind=keys_pb2.KEY_KIND_SERVICE)
    with Client(cp.grpc, api_key=agent_key, retries=0, timeout=5) as piper:
        [lease] = piper.work.claim(["pipe/raw-1"], "piper-a", ttl_seconds=30).leases
        piper.work.complete(lease)
        assert list(piper.work.claim(["pipe/raw-1"], "piper-a", ttl_seconds=30).done) == ["pipe/raw-1"]
        # Past the retention the done item is forgotten and can be claimed again.
        eventually(lambda: piper.work.claim(["pipe/raw-1"], "piper-b", ttl_seconds=30).leases, timeout=10)

    def pruned() -> float:
        with urllib.request.urlopen(f"http://{cp.http}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        line = next(x for x in text.splitlines() if x.startswith('floe_store_pruned_total{kind="lease"}'))
        return float(line.split()[-1])

    assert pruned() >= 1


def test_a_write_waits_for_an_open_transaction_instead_of_joining_it(tmp_path: Path) -> None:
    """Single writes (sessions, leases, pruning) share the write connection with transactions: a
    write issued while another caller's transaction is open must not be undone by its rollback."""

    async def main() -> None:
        store = open_store("sqlite:///cp.db", tmp_path)
        await store.open()
        opened, write_issued = asyncio.Event(), asyncio.Event()

        async def failing_transaction() -> None:
            try:
                async with store.transaction() as tx:
                    await tx.create("tenants/doomed", "tenants", "", b"{}")
                    opened.set()
                    await write_issued.wait()
                    await asyncio.sleep(0.05)  # the write would run now if it did not wait
                    raise RuntimeError("roll back")
            except RuntimeError:
                pass

        async def write_meanwhile() -> None:
            await opened.wait()
            now = time.time_ns()
            pending = asyncio.ensure_future(store.create_session(Session("s1", "users/ann", "h", now, now + HOUR, 0)))
            write_issued.set()
            await pending

        try:
            await asyncio.gather(failing_transaction(), write_meanwhile())
            assert await store.get("tenants/doomed") is None
            assert await store.get_session("s1") is not None
        finally:
            await store.close()

    asyncio.run(main())
