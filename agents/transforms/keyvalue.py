"""key=value pairs on Arrow: splitting a string column into (row, key, value) triples with one RE2
pass, and pivoting triples into one column per key. Used by the ``kv`` and ``cef`` parsers and by
the ``parse_key_value`` step.

Splitting rules: pairs are separated by the pair separator (default a space; runs of it and
surrounding whitespace count as one); a key is a run of characters other than whitespace, quotes
and the separators' first characters; a value is either quoted (``"..."`` or ``'...'``, where
``\\"`` and ``\\\\`` are escapes) or runs up to the pair separator's first character, trimmed of
whitespace. Tokens without a key separator are ignored. When a key repeats in one record, the
last value wins. Control characters U+001E and U+001F in the text are read as U+FFFD (they mark
pairs inside the single RE2 pass).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from agents.transforms.arrowkit import ArrayLike, as_text, to_array

__all__ = ["MAX_KEYS", "Pairs", "pivot", "re2_literal", "split_pairs", "split_tokens"]

#: Distinct keys turned into fields per batch; further keys are counted in ``Pairs.dropped_keys``.
MAX_KEYS: Final = 1000
_PAIR, _KV = "\x1e", "\x1f"
_QUOTED = r"""^(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')$"""


@dataclass(frozen=True)
class Pairs:
    """The fields found: one array per key (in order of first appearance), each as long as the
    input, null where a record lacks the key; ``dropped_keys`` keys beyond ``MAX_KEYS``."""

    columns: dict[str, pa.Array]
    dropped_keys: int
    found: pa.BooleanArray


def re2_literal(text: str) -> str:
    """``text`` as an RE2 pattern matching it literally (also inside a character class)."""
    out = []
    for ch in text:
        if ch.isascii() and (ch.isalnum() or ch == "_"):
            out.append(ch)
        elif ch.isascii() and ch.isprintable() and ch != " ":
            out.append("\\" + ch)
        else:
            out.append(f"\\x{{{ord(ch):X}}}")
    return "".join(out)


def split_pairs(values: ArrayLike, pair_separator: str = " ", kv_separator: str = "=") -> Pairs:
    """The pairs of each string in ``values``, pivoted to columns (see the module docstring)."""
    pair_separator = pair_separator or " "
    kv_separator = kv_separator or "="
    p, k = re2_literal(pair_separator), re2_literal(kv_separator)
    p0, k0 = re2_literal(pair_separator[0]), re2_literal(kv_separator[0])
    key = rf"""[^\s"'{p0}{k0}]+"""
    value = rf""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^{p0}]*"""
    junk = rf"[^{p0}\s]+"
    gap = "" if pair_separator.isspace() else r"\s*"  # "a= b=1" is a="" then b=1 when pairs split at spaces
    pattern = rf"(?:{p}|\s)*(?:({key})\s*{k}{gap}({value})|{junk})|(?:{p}|\s)+$"
    text = pc.replace_substring_regex(as_text(to_array(values)), pattern=r"[\x1e\x1f]", replacement="\ufffd")
    marked = pc.replace_substring_regex(text, pattern=pattern, replacement=f"{_PAIR}\\1{_KV}\\2")
    rows, keys, raw = split_tokens(marked)
    quoted = pc.match_substring_regex(raw, pattern=_QUOTED)
    unquoted = pc.replace_substring_regex(pc.utf8_slice_codeunits(raw, 1, -1), pattern=r"\\(.)", replacement=r"\1")
    cleaned = pc.if_else(quoted, unquoted, pc.utf8_trim_whitespace(raw))
    return pivot(rows, keys, cleaned, len(values))


def split_tokens(marked: pa.Array) -> tuple[np.ndarray, pa.Array, pa.Array]:
    """(row, key, value) of text marked as ``\\x1ekey\\x1fvalue...``, tokens with empty keys left out."""
    tokens = pc.split_pattern(marked, _PAIR)
    rows = pc.list_parent_indices(tokens).to_numpy()
    parts = pc.split_pattern(pc.list_flatten(tokens), _KV, max_splits=1)
    keys = pc.list_element(parts, 0)
    has_value = pc.greater(pc.list_value_length(parts), 1)
    values = pc.if_else(
        has_value, pc.list_element(pc.if_else(has_value, parts, pa.scalar(["", ""], parts.type)), 1), ""
    )
    keep = pc.fill_null(pc.not_equal(keys, ""), False)
    return rows[keep.to_numpy(zero_copy_only=False)], keys.filter(keep), values.filter(keep)


def pivot(rows: np.ndarray, keys: pa.Array, values: pa.Array, n_rows: int, prefix: str = "") -> Pairs:
    """One column per distinct key of the (row, key, value) triples, ``n_rows`` long."""
    found = np.zeros(n_rows, np.bool_)
    found[rows] = True
    if len(keys) == 0:
        return Pairs({}, 0, pa.array(found))
    encoded = pc.dictionary_encode(keys)
    names = encoded.dictionary.to_pylist()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    order = np.argsort(codes, kind="stable")  # rows ascending within each key: the last repeat wins
    bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
    columns: dict[str, pa.Array] = {}
    for code, name in enumerate(names[:MAX_KEYS]):
        positions = order[bounds[code] : bounds[code + 1]]
        index = np.full(n_rows, -1, np.int64)
        index[rows[positions]] = positions
        columns[prefix + name] = values.take(pa.array(index, mask=index < 0))
    return Pairs(columns, max(0, len(names) - MAX_KEYS), pa.array(found))
