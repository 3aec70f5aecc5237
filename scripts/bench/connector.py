#!/usr/bin/env python3
"""Connector throughput: events/s from Parquet into the Elasticsearch bulk protocol.

Writes ROWS syslog-like rows as Parquet files in the packer layout, starts the Elasticsearch
protocol fake (``tests/integration/fake_es.py --discard``: it parses every action and document
line and answers per item, but keeps no documents) in its own process, then a real
``floe agent connector`` (local-only) with one batch job over the dataset. The figure is rows
delivered divided by the time from the first to the last bulk request the server answered.

Usage:
    python scripts/bench/connector.py [--rows 2000000] [--files 4] [--batch-size 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from agents.runtime.layout import parquet_key  # noqa: E402


def write_dataset(store: Path, rows: int, files: int) -> None:
    per = rows // files
    hosts = np.array([f"host-{i:03d}" for i in range(200)])
    for f in range(files):
        rng = np.random.default_rng(f)
        base = np.datetime64("2026-03-01T10:00:00", "us") + np.arange(per) * 1000
        table = pa.table(
            {
                "timestamp": pa.array(base, pa.timestamp("us", tz="UTC")),
                "host": pa.array(hosts[rng.integers(0, 200, per)]),
                "severity": pa.array(rng.integers(0, 8, per), pa.int32()),
                "app": pa.array(np.array(["sshd", "nginx", "kernel", "cron"])[rng.integers(0, 4, per)]),
                "msg": pa.array(
                    np.char.add("Accepted publickey for user from 10.0.0.", rng.integers(0, 255, per).astype(str))
                ),
            }
        )
        key = parquet_key("bench", "syslog", f"20260301{10 + f:02d}", f"f{f}")
        path = store / key
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        path.write_bytes(buf.getvalue())


def stats(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/_fake/stats", timeout=5) as resp:  # noqa: S310 - http:// built here
        return dict(json.loads(resp.read()))


def one_run(rows: int, files: int, batch_size: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_dataset(data / "objects" / "parquet", rows, files)
        es = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.fake_es", "--discard"], stdout=subprocess.PIPE, cwd=ROOT
        )
        assert es.stdout is not None
        url = json.loads(es.stdout.readline())["url"]
        config = Path(tmp) / "connector.yaml"
        job = {
            "name": "tenants/bench/exports/es",
            "dataset": "tenants/bench/datasets/syslog",
            "mode": "EXPORT_MODE_BATCH",
            "batchSize": batch_size,
            "destination": {"elasticsearch": {"url": url, "index": "bench"}},
        }
        config.write_text(json.dumps({"exports": [job]}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOE_")}
        agent = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "floe.cli",
                "agent",
                "connector",
                "--config-mode",
                "local-only",
                "--config",
                str(config),
                "--data-dir",
                str(data),
                "--api-listen",
                "127.0.0.1:0",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
        )
        try:
            deadline = time.monotonic() + 600
            while (s := stats(url))["items"] < rows:
                if time.monotonic() > deadline or agent.poll() is not None:
                    raise SystemExit(f"export did not finish: {s}")
                time.sleep(0.2)
            return rows / s["elapsed"]
        finally:
            agent.terminate()
            agent.wait(30)
            es.kill()
            es.wait()
            es.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rates = []
    for i in range(args.runs):
        rate = one_run(args.rows, args.files, args.batch_size)
        rates.append(rate)
        print(f"run {i + 1}: {rate:,.0f} events/s", flush=True)
    print(
        json.dumps(
            {
                "rows": args.rows,
                "batch_size": args.batch_size,
                "median_events_per_s": round(statistics.median(rates)),
                "min": round(min(rates)),
                "max": round(max(rates)),
                "target": 200_000,
            }
        )
    )


if __name__ == "__main__":
    main()
