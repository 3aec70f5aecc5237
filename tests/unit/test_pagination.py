"""Paging of in-memory lists (agents, service health) with the same tokens as stored lists."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from control_plane.core.errors import InvalidArgument
from control_plane.core.pagination import page_request


@dataclass(frozen=True)
class Item:
    name: str


def test_pages_cover_every_item_once_in_order() -> None:
    items = [Item(f"agents/a{i:02d}") for i in range(7)]
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        chunk, token = page_request(3, token, "agents").of(items)
        seen += [i.name for i in chunk]
        pages += 1
        if not token:
            break
    assert seen == [i.name for i in items]
    assert pages == 3


def test_exact_multiple_ends_without_an_empty_page() -> None:
    items = [Item(f"agents/a{i}") for i in range(4)]
    first, token = page_request(2, "", "k").of(items)
    second, token = page_request(2, token, "k").of(items)
    assert [i.name for i in first + second] == [i.name for i in items]
    assert token == ""


def test_a_token_is_bound_to_its_query() -> None:
    items = [Item(f"agents/a{i}") for i in range(4)]
    _, token = page_request(2, "", "proxy").of(items)
    with pytest.raises(InvalidArgument):
        page_request(2, token, "piper")
