"""Every input plugin of the proxy, by source type: what the control plane validates datasets
against and what the proxy's listeners build inputs from.

``describe()`` and ``reference()`` render the schemas for people (``floe`` CLI, docs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agents.sources import nats, tcp, udp, webhook
from agents.sources.plugin import Option, OptionsError, SourcePlugin
from floe.v1 import datasets_pb2

__all__ = ["PLUGINS", "Option", "OptionsError", "SourcePlugin", "describe", "plugin", "problems", "reference"]

PLUGINS: dict[int, SourcePlugin] = {
    p.source_type: p for p in (*udp.PLUGINS, *tcp.PLUGINS, *webhook.PLUGINS, *nats.PLUGINS)
}
_ST = datasets_pb2.SourceType
assert set(PLUGINS) == set(_ST.values()) - {_ST.SOURCE_TYPE_UNSPECIFIED}, "every source type needs a plugin"


def plugin(source_type: int) -> SourcePlugin | None:
    """The plugin of ``source_type``, or None for an unknown or unset type."""
    return PLUGINS.get(source_type)


def problems(source: datasets_pb2.Source) -> list[tuple[str, str]]:
    """Every (option name, sentence) wrong with ``source.options`` for its type."""
    found = plugin(source.type)
    return [] if found is None else found.problems(source.options)


def describe() -> list[dict[str, Any]]:
    """Every plugin and its options as data, in source-type order."""
    return [PLUGINS[t].describe() for t in sorted(PLUGINS)]


def reference(plugins: Mapping[int, SourcePlugin] = PLUGINS) -> str:
    """A Markdown reference of every source type and its options."""
    out = []
    for source_type in sorted(plugins):
        p = plugins[source_type]
        out += [f"### `{p.name}` ({_ST.Name(source_type)})", "", p.summary, ""]  # type: ignore[arg-type]
        if not p.options:
            out += ["No options.", ""]
            continue
        out += ["| option | type | default | description |", "|---|---|---|---|"]
        for o in p.options:
            d = o.describe()
            default = "required" if o.required else ("" if d["default"] is None else f"`{d['default']}`")
            kind = o.kind + (f" ({', '.join(o.choices)})" if o.choices else "")
            out.append(f"| `{o.name}` | {kind} | {default} | {o.help} |")
        out.append("")
    return "\n".join(out)
