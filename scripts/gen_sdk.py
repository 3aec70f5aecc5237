#!/usr/bin/env python3
"""Generate the SDK code from ``proto/``: Python protobuf, gRPC and type stubs in ``sdk/floe/v1``,
and the TypeScript messages and service descriptors in ``sdk/ts/floe/v1`` that the web dashboard
imports (``protoc-gen-es``, pinned in ``web/package.json``; run ``npm ci`` in ``web/`` first), and
``sdk/ts/floe/sources.json``: the proxy input plugins' option schemas (``agents/sources/registry.py``)
and default data hints, so the dashboard's dataset form offers exactly what the server validates.

This is the only way generated code enters the repository. ``--check`` regenerates into a
temporary directory and exits 1 when the committed files differ (CI and a test run it).

Usage:
    python scripts/gen_sdk.py           # rewrite sdk/floe/v1 and sdk/ts/floe/v1
    python scripts/gen_sdk.py --check   # fail when either is stale
"""

from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
OUT_ROOT = ROOT / "sdk"
PACKAGE_DIR = Path("floe") / "v1"
TS_DIR = Path("ts") / "floe" / "v1"
SOURCES_JSON = Path("ts") / "floe" / "sources.json"
PROTOC_GEN_ES = ROOT / "web" / "node_modules" / ".bin" / "protoc-gen-es"
INIT_TEXT = '"""Generated from proto/floe/v1 by scripts/gen_sdk.py. Do not edit."""\n'


def _plugin(name: str) -> str:
    """Find a protoc plugin next to this interpreter, falling back to PATH."""
    candidate = Path(sysconfig.get_path("scripts")) / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found: install the dev extras (pip install -e '.[dev]').")
    return found


def generate(out_root: Path) -> None:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    target = out_root / PACKAGE_DIR
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        *protos,
    ]
    subprocess.run(cmd, check=True, cwd=ROOT)
    (target / "__init__.py").write_text(INIT_TEXT)
    (target / "py.typed").write_text("")
    generate_ts(out_root)


def generate_ts(out_root: Path) -> None:
    """TypeScript for the dashboard: ``buf generate`` with protoc-gen-es from web/node_modules."""
    if not PROTOC_GEN_ES.exists():
        raise SystemExit(f"{PROTOC_GEN_ES.relative_to(ROOT)} not found: run `npm ci` in web/ first.")
    target = out_root / TS_DIR
    if target.exists():
        shutil.rmtree(target)
    plugin = {"local": str(PROTOC_GEN_ES), "out": str(out_root / "ts"), "opt": ["target=ts", "import_extension=none"]}
    template = json.dumps({"version": "v2", "plugins": [plugin]})
    subprocess.run([_plugin("buf"), "generate", "proto", "--template", template], check=True, cwd=ROOT)
    generate_sources(out_root)


def generate_sources(out_root: Path) -> None:
    """The input plugins' option schemas as JSON, from the same registry the control plane validates with."""
    sys.path.insert(0, str(ROOT))
    from agents.sources.registry import describe
    from floe.protocol import DEFAULT_DATA_HINTS
    from floe.v1 import datasets_pb2

    names = datasets_pb2.SourceType.Name
    hints = {names(datasets_pb2.SourceType.ValueType(k)): v for k, v in DEFAULT_DATA_HINTS.items()}
    hints = {k.removeprefix("SOURCE_TYPE_").lower(): v for k, v in hints.items()}
    data = {"generated_by": "scripts/gen_sdk.py", "sources": describe(), "default_data_hints": hints}
    (out_root / SOURCES_JSON).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _generated(folder: Path) -> set[str]:
    """Generated file names in ``folder`` (bytecode caches are not ours to compare)."""
    return {p.name for p in folder.iterdir() if p.is_file() and p.suffix != ".pyc"}


def _diff(a: Path, b: Path) -> list[str]:
    names = sorted(_generated(a) | _generated(b))
    stale = []
    for name in names:
        pa, pb = a / name, b / name
        if not (pa.exists() and pb.exists()) or not filecmp.cmp(pa, pb, shallow=False):
            stale.append(name)
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail when the committed code is stale")
    args = parser.parse_args()
    if not args.check:
        generate(OUT_ROOT)
        print(f"Generated {OUT_ROOT / PACKAGE_DIR} and {OUT_ROOT / TS_DIR}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        stale = []
        for folder in (PACKAGE_DIR, TS_DIR):
            committed = OUT_ROOT / folder
            if not committed.exists():
                print(f"{committed} is missing: run python scripts/gen_sdk.py", file=sys.stderr)
                return 1
            stale += [str(folder / name) for name in _diff(Path(tmp) / folder, committed)]
        fresh, have = Path(tmp) / SOURCES_JSON, OUT_ROOT / SOURCES_JSON
        if not have.exists() or not filecmp.cmp(fresh, have, shallow=False):
            stale.append(str(SOURCES_JSON))
    if stale:
        print(
            "Generated code is stale: " + ", ".join(stale) + ". Run python scripts/gen_sdk.py.",
            file=sys.stderr,
        )
        return 1
    print("Generated code is up to date.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
