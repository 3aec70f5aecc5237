#!/usr/bin/env python3
"""Benchmark: the piper's transformation engine (agents/transforms) on parsed syslog records.

Generates ``--lines`` realistic ~200-byte syslog lines (half RFC 3164, half RFC 5424, as in
scripts/bench/syslog_parse.py; half of them end with an 8-digit ``id=``), parses them once with
``parse_body(body, "syslog")`` outside the timing, then runs a 5-step chain on batches of ``--batch`` records:

1. filter: exclude severity > 6 (drops debug, about 1/8 of the records)
2. rename_field: hostname -> host
3. mask: every run of 3+ digits in message, keeping the last 2
4. hash_field: sha256(salt || host) into host_hash (--hash-field picks another field, e.g.
   ``message`` for a high-cardinality field)
5. add_field: env = "prod"

It prints records/s per step (records entering the step / time in the step) and for the whole
chain, then ``parse_body`` alone and parse + transform together from the raw body. Target (issue 6): >= 1,000,000
records/s per core for the chain. CPU is process CPU time over the same window (above 100 %
means Arrow or DuckDB used more than one thread).

    python scripts/bench/piper_transforms.py                     # 1,000,000 lines, batches of 100,000
    python scripts/bench/piper_transforms.py --repeat 5 --batch 50000

Prints a table and one line ``BENCH_JSON {...}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `agents` and `scripts` importable from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pyarrow as pa
from google.protobuf import json_format

from agents.transforms import compile_plan, parse_body
from floe.v1 import transforms_pb2 as tp
from scripts.bench.syslog_parse import make_lines


def chain(hash_field: str) -> list[tp.Transformation]:
    steps = [
        {
            "id": "drop-debug",
            "filter": {
                "mode": "MODE_EXCLUDE",
                "condition": {"compare": {"field": "severity", "operator": "OPERATOR_GT", "value": "6"}},
            },
        },
        {"id": "rename-host", "rename_field": {"from": "hostname", "to": "host"}},
        {"id": "mask-numbers", "mask": {"field": "message", "pattern": r"\d{3,}", "keep_last": 2}},
        {"id": "hash-host", "hash_field": {"field": hash_field, "target": f"{hash_field}_hash"}},
        {"id": "add-env", "add_field": {"field": "env", "value": "prod"}},
    ]
    return [json_format.ParseDict(s, tp.Transformation()) for s in steps]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs; the median and range are printed")
    ap.add_argument("--hash-field", default="host", help="field hashed by step 4 (after the rename)")
    args = ap.parse_args(argv)

    lines = make_lines(args.lines, 200)
    # Half the messages carry an 8-digit number for the mask step to find (the generator's words have none).
    lines = [line[:180] + b" id=%d" % (10_000_000 + i) if i % 2 else line for i, line in enumerate(lines)]
    bodies = [b"\n".join(lines[i : i + args.batch]) + b"\n" for i in range(0, len(lines), args.batch)]
    received = 1_760_000_000_000_000_000
    tables = [parse_body(body, "syslog", received_at=received).table for body in bodies]
    steps = chain(args.hash_field)
    compile_plan(steps, salt="bench-salt").run(tables[0].slice(0, 1000))  # warm up (imports, DuckDB)

    runs: list[dict[str, float]] = []
    for _ in range(args.repeat):
        plan = compile_plan(steps, salt="bench-salt")
        per_step = [0.0] * len(steps)
        rows_in = [0] * len(steps)
        out_rows = 0
        c0, t0 = time.process_time(), time.perf_counter()
        for table in tables:
            result = plan.run(table)
            out_rows += result.table.num_rows
            for st in result.step_stats:
                per_step[st.index] += st.seconds
                rows_in[st.index] += st.rows_in
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        run = {"chain_rps": args.lines / wall, "cpu_pct": 100 * cpu / wall, "out_rows": out_rows}
        run.update({f"step{i}_rps": rows_in[i] / per_step[i] for i in range(len(steps))})

        t0 = time.perf_counter()
        for body in bodies:
            parse_body(body, "syslog", received_at=received)
        run["parse_rps"] = args.lines / (time.perf_counter() - t0)

        c0, t0 = time.process_time(), time.perf_counter()
        for body in bodies:
            plan.run(parse_body(body, "syslog", received_at=received).table)
        wall2, cpu2 = time.perf_counter() - t0, time.process_time() - c0
        run.update({"parse_chain_rps": args.lines / wall2, "parse_chain_cpu_pct": 100 * cpu2 / wall2})
        runs.append(run)

    def fig(key: str) -> tuple[float, float, float]:
        values = [r[key] for r in runs]
        return statistics.median(values), min(values), max(values)

    print(f"{args.lines:,} syslog records in batches of {args.batch:,}, {args.repeat} runs (median [min-max])")
    print(f"{'stage':<34}{'records/s':>14}{'range':>32}")
    for i, step in enumerate(steps):
        med, lo, hi = fig(f"step{i}_rps")
        label = f"{i + 1}. {step.WhichOneof('kind')} ({step.id})"
        print(f"{label:<34}{med:>14,.0f}{f'{lo:,.0f} - {hi:,.0f}':>32}")
    stages = (
        ("chain_rps", "5-step chain"),
        ("parse_rps", "parse (syslog)"),
        ("parse_chain_rps", "parse + 5-step chain"),
    )
    for key, label in stages:
        med, lo, hi = fig(key)
        print(f"{label:<34}{med:>14,.0f}{f'{lo:,.0f} - {hi:,.0f}':>32}")
    print(f"CPU: chain {fig('cpu_pct')[0]:.0f} %, parse + chain {fig('parse_chain_cpu_pct')[0]:.0f} %")
    print(f"records out per run: {int(runs[0]['out_rows']):,} (severity 7 dropped)")
    summary = {k: round(fig(k)[0]) for k in runs[0]}
    summary.update(lines=args.lines, batch=args.batch, repeat=args.repeat, pyarrow=pa.__version__)
    print("BENCH_JSON " + json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
