"""The per-process window used while Redis is down counts like the shared one: at most N hits
in any window, each hit freed exactly one window after it was made."""

from __future__ import annotations

import time

from common.infra.sliding_window import LocalSlidingWindow

WINDOW = 0.25


def test_at_most_the_limit_in_a_window_and_a_hit_frees_one_window_later():
    window = LocalSlidingWindow()
    first = window.hit("k", 2, WINDOW)
    assert first.granted and first.remaining == 1
    assert window.hit("k", 2, WINDOW).granted
    refused = window.hit("k", 2, WINDOW)
    assert not refused.granted and 0 < refused.retry_after <= WINDOW
    time.sleep(refused.retry_after + 0.02)  # the oldest hit has left the window
    assert window.hit("k", 2, WINDOW).granted


def test_keys_are_counted_apart():
    window = LocalSlidingWindow()
    assert window.hit("a", 1, 60).granted and not window.hit("a", 1, 60).granted
    assert window.hit("b", 1, 60).granted
