"""The shared retry policy."""

from __future__ import annotations

import pytest

from floe.backoff import Backoff


def test_delays_double_up_to_the_maximum_with_jitter() -> None:
    b = Backoff(1.0, 4.0)
    bases = [1.0, 2.0, 4.0, 4.0]
    for base in bases:
        assert 0.5 * base <= b.delay() <= 1.5 * base
    b.reset()
    assert b.delay() <= 1.5


def test_server_hint_wins_and_does_not_grow_the_delay() -> None:
    b = Backoff(1.0, 8.0)
    assert b.delay(3.25) == 3.25
    assert b.delay() <= 1.5  # still the first step


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="initial"):
        Backoff(0, 1)
    with pytest.raises(ValueError, match="maximum"):
        Backoff(2, 1)
