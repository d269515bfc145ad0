"""Cost of usage from the price table."""

from __future__ import annotations

from decimal import Decimal

from common.billing.pricing import Usage, cost_of
from common.infra.settings import DEFAULT_PRICES


def test_tokens_are_priced_per_thousand_and_images_per_image():
    prices = {"m": {"input": Decimal("0.001"), "output": Decimal("0.002")},
              "img": {"image": Decimal("0.16")}}
    assert cost_of(prices, "m", Usage(1500, 500, 2000)) == Decimal("0.00250000")
    assert cost_of(prices, "img", Usage(image_count=3)) == Decimal("0.48000000")


def test_unknown_model_costs_nothing():
    assert cost_of(DEFAULT_PRICES, "nobody", Usage(10, 10, 20)) == 0


def test_defaults_follow_the_protocol_document():
    assert DEFAULT_PRICES["qwen-plus"] == {"input": Decimal("0.0008"),
                                           "output": Decimal("0.002")}
    assert DEFAULT_PRICES["wanx-v1"] == {"image": Decimal("0.16")}
