"""The cost of a usage record, from the configured price table."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

_THOUSAND = Decimal(1000)
_QUANTUM = Decimal("0.00000001")  # the precision of usage_records.cost


@dataclasses.dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    image_count: int = 0
    # Of input_tokens, those of input images (vision models): DashScope counts them in
    # input_tokens and prices them as input unless the model has an "image_input" price.
    image_tokens: int = 0
    video_seconds: int = 0  # seconds of video DashScope generated (and bills)
    video_count: int = 0
    # Not what DashScope reported but our estimate (a stream that ended before DashScope
    # reported usage): flagged on the usage row, never silently zero.
    estimated: bool = False


def cost_of(prices: dict[str, dict[str, Decimal]], model: str, usage: Usage) -> Decimal:
    """Tokens are priced per 1,000, images per image, video per second; an unpriced model
    costs 0 (and is logged by the caller's reconciliation, not guessed here). Image input
    tokens are input tokens, at the "image_input" price where the model has one."""
    price = prices.get(model, {})
    input_price = price.get("input", Decimal(0))
    image_price = price.get("image_input", input_price)
    amount = (
        Decimal(usage.input_tokens - usage.image_tokens) * input_price / _THOUSAND
        + Decimal(usage.image_tokens) * image_price / _THOUSAND
        + Decimal(usage.output_tokens) * price.get("output", Decimal(0)) / _THOUSAND
        + Decimal(usage.image_count) * price.get("image", Decimal(0))
        + Decimal(usage.video_seconds) * price.get("video_second", Decimal(0))
    )
    return amount.quantize(_QUANTUM)
