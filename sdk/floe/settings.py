"""One settings loader for every Floe process: defaults < YAML file < ``FLOE_*`` env < CLI flags.

A component declares its settings as a frozen dataclass whose fields carry a ``help`` text in
their metadata. From that one declaration this module derives the CLI flags (``--grpc-listen``),
the environment variables (``FLOE_GRPC_LISTEN``), the YAML keys (``grpc_listen``) and the
configuration reference in the docs. Every invalid value is reported, naming the setting and
where it came from, before the process starts serving.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = [
    "ConfigError",
    "add_arguments",
    "format_duration",
    "load_settings",
    "parse_duration",
    "parse_host_port",
    "reference_table",
    "setting",
]

T = TypeVar("T")

ENV_PREFIX = "FLOE_"
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class ConfigError(ValueError):
    """Raised when one or more settings are invalid; the message names every one."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("Invalid configuration:\n  " + "\n  ".join(self.problems))


def setting(default: Any, help: str, *, kind: str = "", secret: bool = False) -> Any:
    """Declare a settings field.

    ``kind`` is ``duration``, ``host_port``, ``raw`` (structured YAML only, passed through) or
    empty (the type decides). Mutable defaults (lists, dicts) are copied per instance.
    """
    metadata = {"help": help, "kind": kind, "secret": secret}
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def parse_duration(value: str | float | int) -> float:
    """Parse ``"250ms"``, ``"30s"``, ``"15m"``, ``"2h"``, ``"7d"`` or a number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = _DURATION_RE.match(str(value))
        if not m:
            raise ValueError(f"{value!r} is not a duration such as 30s, 15m or 2h")
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if not math.isfinite(seconds):  # YAML .nan / .inf, or a number too large to be a duration
        raise ValueError(f"{value!r} is not a finite duration")
    if seconds < 0:
        raise ValueError(f"{value!r} is negative")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact form: ``900.0`` -> ``15m``, ``1.5`` -> ``1500ms``."""
    for unit in ("d", "h", "m", "s"):
        size = _DURATION_UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"


def parse_host_port(value: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6); the port may be 0 to pick a free one."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{value!r} is not host:port (for example 127.0.0.1:9090)")
    return host.strip("[]"), int(port)


def _env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _field_type(cls: type, f: dataclasses.Field[Any]) -> Any:
    hints = typing.get_type_hints(cls)
    tp = hints[f.name]
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0]
    return tp


def _convert(cls: type, f: dataclasses.Field[Any], raw: Any) -> Any:
    kind = f.metadata.get("kind", "")
    tp = _field_type(cls, f)
    if raw is None:
        return None
    if kind == "raw":
        # Structured YAML (e.g. a list of datasets), validated by its consumer.
        if isinstance(raw, str):
            raise ValueError("can only be set in the YAML config file")
        return raw
    if kind == "duration":
        return parse_duration(raw)
    if kind == "host_port":
        parse_host_port(str(raw))
        return str(raw)
    if tp is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{raw!r} is not a boolean (true/false)")
    if tp is int:
        # YAML may give a float: 2.5 must not silently become 2 (the env value "2.5" is refused too).
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError(f"{raw!r} is not an integer")
        return int(raw)
    if tp is float:
        number = float(raw)
        if not math.isfinite(number):
            raise ValueError(f"{raw!r} is not a finite number")
        return number
    if tp is Path:
        return Path(str(raw)).expanduser()
    if tp is str:
        return str(raw)
    if typing.get_origin(tp) is dict:
        if isinstance(raw, Mapping):
            return {str(k): str(v) for k, v in raw.items()}
        pairs = [p for p in str(raw).split(",") if p.strip()]
        out = {}
        for p in pairs:
            k, sep, v = p.partition("=")
            if not sep:
                raise ValueError(f"{raw!r} is not a list of key=value pairs")
            out[k.strip()] = v.strip()
        return out
    if typing.get_origin(tp) is list:
        if isinstance(raw, list):
            return [str(v) for v in raw]
        return [p.strip() for p in str(raw).split(",") if p.strip()]
    return raw


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one ``--flag`` per settings field; unset flags stay ``None`` so lower layers apply."""
    for f in dataclasses.fields(cls):
        if f.metadata.get("kind") == "raw":
            continue
        tp = _field_type(cls, f)
        env = _env_name(f.name)
        help_text = f"{f.metadata.get('help', '')} [env {env}]"
        if tp is bool:
            parser.add_argument(
                _flag_name(f.name),
                dest=f.name,
                default=None,
                action=argparse.BooleanOptionalAction,
                help=help_text,
            )
        else:
            parser.add_argument(_flag_name(f.name), dest=f.name, default=None, metavar="VALUE", help=help_text)


def load_settings(
    cls: type[T],
    *,
    config_file: Path | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> T:
    """Build ``cls`` from defaults, then the YAML file, then ``FLOE_*`` env, then flags.

    Raises ConfigError naming every invalid or unknown setting and its source.
    """
    environ = os.environ if environ is None else environ
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    problems: list[str] = []

    def take(name: str, raw: Any, source: str) -> None:
        try:
            values[name] = _convert(cls, fields[name], raw)
        except (ValueError, TypeError) as exc:
            problems.append(f"{name} ({source}): {exc}")

    if config_file is not None:
        try:
            data = yaml.safe_load(config_file.read_text()) or {}
        except OSError as exc:
            raise ConfigError([f"config file {config_file}: cannot read it ({exc.strerror})"]) from exc
        except yaml.YAMLError as exc:
            raise ConfigError([f"config file {config_file}: not valid YAML ({exc})"]) from exc
        if not isinstance(data, dict):
            raise ConfigError([f"config file {config_file}: expected a mapping of setting names to values"])
        for key, raw in data.items():
            name = str(key).replace("-", "_")
            if name not in fields:
                problems.append(f"{key} (file {config_file}): unknown setting; known: {', '.join(sorted(fields))}")
                continue
            take(name, raw, f"file {config_file}")
    for name, f in fields.items():
        env = _env_name(name)
        if f.metadata.get("kind") == "raw":
            continue
        if env in environ and environ[env] != "":
            take(name, environ[env], f"env {env}")
    for name, raw in (flags or {}).items():
        if name in fields and raw is not None:
            take(name, raw, f"flag {_flag_name(name)}")
    if problems:
        raise ConfigError(problems)
    try:
        settings = cls(**values)
    except ConfigError:  # __post_init__ that already lists every problem
        raise
    except ValueError as exc:  # __post_init__ cross-field checks
        raise ConfigError([str(exc)]) from exc
    return settings


def reference_table(cls: type) -> str:
    """Markdown table of every setting: YAML key, flag, env, default, meaning (for docs)."""
    rows = ["| key | flag | env | default | meaning |", "|---|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else ""
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        if default is None or default == "":
            shown = "(none)"
        elif f.metadata.get("kind") == "duration":
            shown = format_duration(float(default))
        else:
            shown = str(default)
        if f.metadata.get("kind") == "raw":
            names = f"`{f.name}` | (file only) | (file only)"
        else:
            names = f"`{f.name}` | `{_flag_name(f.name)}` | `{_env_name(f.name)}`"
        rows.append(f"| {names} | `{shown}` | {f.metadata.get('help', '')} |")
    return "\n".join(rows)
