"""The poll schedules of async-task jobs: images poll fast, videos back off to suit tasks of
minutes, and a finished task is always seen by the next poll, so never later than the current
delay after it finished (the "within one poll interval" promise)."""

from __future__ import annotations

from decimal import Decimal

from common.billing.pricing import Usage, cost_of
from common.infra.settings import Settings
from common.jobs.tasks import poll_delay


def test_the_default_schedules():
    settings = Settings(app_env="development")
    image = [poll_delay(settings.image_poll_backoff, n) for n in range(6)]
    video = [poll_delay(settings.video_poll_backoff, n) for n in range(6)]
    assert image == [1, 2, 5, 10, 10, 10]
    assert video == [5, 10, 15, 15, 15, 15]


def test_a_five_minute_video_costs_about_twenty_queries_and_is_seen_within_15_seconds():
    backoff = Settings(app_env="development").video_poll_backoff
    polls, at = [], 0.0
    while not polls or polls[-1] < 300:
        at += poll_delay(backoff, len(polls))
        polls.append(at)
    assert len(polls) <= 22  # images' schedule would need 32 for the same five minutes
    for finished in (1.0, 42.0, 299.0):
        seen = next(p for p in polls if p >= finished)
        assert seen - finished <= max(backoff)


def test_video_is_priced_per_second_from_usage():
    prices = Settings(app_env="development").prices
    assert cost_of(prices, "wan2.2-t2v-plus", Usage(video_seconds=5, video_count=1)) == \
        Decimal("3.50000000")
    assert cost_of(prices, "wanx2.1-t2v-turbo", Usage(video_seconds=3, video_count=1)) == \
        Decimal("0.72000000")
    assert cost_of(prices, "wanx2.1-imageedit", Usage(image_count=2)) == Decimal("0.28000000")
