"""Opaque page tokens (AIP-158). A token records the last name returned and a digest of the
request's other parameters, so a token cannot be replayed against a different query."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from typing import Protocol, TypeVar

from control_plane.core.errors import FieldViolation, InvalidArgument

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "Page", "page_request"]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


class _Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=_Named)


class Page:
    """What a List call asks for: where to resume and how many."""

    def __init__(self, after: str, size: int, query_digest: str) -> None:
        self.after = after
        self.size = size
        self._digest = query_digest

    def next_token(self, names: list[str], has_more: bool) -> str:
        """The next_page_token for a page whose last result is ``names[-1]``; empty at the end."""
        if not has_more or not names:
            return ""
        raw = json.dumps({"a": names[-1], "q": self._digest}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def of(self, items: Sequence[N]) -> tuple[list[N], str]:
        """This page of an in-memory list sorted by ``name``, and the next page token."""
        rest = [item for item in items if item.name > self.after]
        chunk = rest[: self.size]
        return chunk, self.next_token([item.name for item in chunk], len(rest) > self.size)


def page_request(page_size: int, page_token: str, *query: object) -> Page:
    """Validate page_size and page_token; ``query`` are the request's filter values."""
    if page_size < 0:
        raise InvalidArgument.from_violations([FieldViolation("page_size", "must not be negative")])
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    digest = hashlib.sha256(json.dumps([str(q) for q in query]).encode()).hexdigest()[:16]
    if not page_token:
        return Page("", size, digest)
    try:
        padded = page_token + "=" * (-len(page_token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded))
        after, token_digest = str(data["a"]), str(data["q"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument.from_violations(
            [FieldViolation("page_token", "is not a token this server issued")]
        ) from exc
    if token_digest != digest:
        raise InvalidArgument.from_violations(
            [FieldViolation("page_token", "belongs to a request with different parameters")]
        )
    return Page(after, size, digest)
