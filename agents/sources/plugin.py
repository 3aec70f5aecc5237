"""The contract of an input plugin: its self-describing option schema, the context a running
input is given, and the start/stop lifecycle the proxy's listeners drive.

The schema is the single source of truth for a source type's ``Dataset.source.options``: the
control plane validates datasets with it (``control_plane/core/datasets.py``) and the proxy parses
them with it, so both agree by construction. Option values are strings on the wire (a
``map<string, string>``); ``Option.parse`` turns one into its typed value or says what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from agents.proxy.sink import Sink
from agents.runtime.health import Component
from floe.settings import format_duration, parse_duration
from floe.v1 import datasets_pb2

__all__ = ["Input", "InputContext", "Option", "OptionsError", "SourcePlugin"]

KINDS = ("bytes", "int", "duration", "choice", "string", "path", "secret")


class OptionsError(ValueError):
    """Raised when a dataset's source options do not fit its plugin's schema; ``problems`` holds
    every (option name, sentence) pair, not only the first."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"options.{name}: {text}" for name, text in problems))
        self.problems = problems


@dataclass(frozen=True)
class Option:
    """One key of ``Dataset.source.options``."""

    name: str
    kind: str
    """``bytes`` (a whole number of bytes), ``int``, ``duration`` (30s, 15m, 2h or seconds),
    ``choice`` (one of ``choices``), ``string``, ``path`` or ``secret`` (a string never shown)."""
    default: Any
    """The typed value used when the option is absent; None means absent stays absent."""
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    required: bool = False
    check: Callable[[str], str | None] | None = None
    """Further validation of the raw string: None when fine, else what is wrong."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"option {self.name}: kind {self.kind!r} is not one of {', '.join(KINDS)}")

    def parse(self, raw: str) -> Any:
        """The typed value of ``raw``; ValueError with a sentence (without the option's name)."""
        value: Any
        if self.kind in ("bytes", "int"):
            # isdigit() alone accepts '²' and other digits int() cannot parse.
            if not (raw.isascii() and raw.isdigit()):
                unit = "bytes" if self.kind == "bytes" else "number"
                raise ValueError(f"must be a whole number{' of bytes' if unit == 'bytes' else ''}, not {raw!r}")
            value = int(raw)
        elif self.kind == "duration":
            try:
                value = parse_duration(raw)
            except ValueError as exc:
                raise ValueError(str(exc)) from None
        elif self.kind == "choice":
            if raw not in self.choices:
                raise ValueError(f"must be {', '.join(self.choices[:-1])} or {self.choices[-1]}, not {raw!r}")
            value = raw
        else:
            if not raw:
                raise ValueError("must not be empty")
            value = raw
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"must be at least {self._show(self.minimum)}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"must be at most {self._show(self.maximum)}")
        if self.check is not None:
            problem = self.check(raw)
            if problem:
                raise ValueError(problem)
        return value

    def _show(self, value: float) -> str:
        return format_duration(value) if self.kind == "duration" else f"{value:g}"

    def describe(self) -> dict[str, Any]:
        """The option as data (for ``floe sources`` and the docs)."""
        default = self.default
        if self.kind == "secret":
            default = None
        elif self.kind == "duration" and default is not None:
            default = format_duration(default)
        out: dict[str, Any] = {"name": self.name, "type": self.kind, "default": default, "help": self.help}
        if self.choices:
            out["choices"] = list(self.choices)
        if self.required:
            out["required"] = True
        return out


class Input(Protocol):
    """A running input of one dataset.

    ``start`` binds (or connects) and returns once the input is receiving; it raises OSError when
    its address cannot be bound, leaving nothing behind. ``stop`` releases the address before it
    returns, so the same port can be bound again at once; what was already received is handed to
    the sink first.
    """

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class InputContext:
    """What a running input is given. ``dataset`` is replaced in place when the dataset changes
    in ways that need no restart (labels, transformations), so read it at submit time."""

    dataset: datasets_pb2.Dataset
    options: dict[str, Any]
    component: Component
    sink: Sink

    @property
    def address(self) -> tuple[str, int]:
        return self.dataset.source.bind_host or "0.0.0.0", self.dataset.source.port


@dataclass(frozen=True)
class SourcePlugin:
    """One source type: its name, what it does, its options and how to build its input."""

    source_type: int
    name: str
    summary: str
    options: tuple[Option, ...]
    build: Callable[[InputContext], Input] = field(repr=False)

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)

    def problems(self, options: Mapping[str, str]) -> list[tuple[str, str]]:
        """Every (option name, sentence) wrong with ``options``: unknown keys, bad values, missing
        required ones."""
        out: list[tuple[str, str]] = []
        known = {o.name: o for o in self.options}
        for key in sorted(options):
            opt = known.get(key)
            if opt is None:
                allowed = ", ".join(sorted(known)) or "none"
                out.append((key, f"is not an option of {self.name} sources (options: {allowed})"))
                continue
            try:
                opt.parse(options[key])
            except ValueError as exc:
                out.append((key, str(exc)))
        for opt in self.options:
            if opt.required and not options.get(opt.name):
                out.append((opt.name, f"is required for {self.name} sources"))
        return out

    def parse(self, options: Mapping[str, str]) -> dict[str, Any]:
        """Typed options with defaults filled in; OptionsError naming every problem."""
        problems = self.problems(options)
        if problems:
            raise OptionsError(problems)
        return {o.name: o.parse(options[o.name]) if o.name in options else o.default for o in self.options}

    def describe(self) -> dict[str, Any]:
        return {
            "type": self.name,
            "summary": self.summary,
            "options": [o.describe() for o in self.options],
        }
