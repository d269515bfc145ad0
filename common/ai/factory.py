"""Which backend runs a kind of job, from settings."""

from __future__ import annotations

from common.ai.base import AIBackend
from common.ai.dashscope_backend import DashScopeBackend
from common.settings import Settings


def _dashscope(settings: Settings) -> DashScopeBackend:
    key = settings.qwen_api_key.get_secret_value() if settings.qwen_api_key else ""
    return DashScopeBackend(api_key=key, base_url=settings.dashscope_http_base_url,
                            timeout=settings.upstream_timeout_seconds)


def chat_backend(settings: Settings) -> AIBackend:
    return _dashscope(settings)


def image_backend(settings: Settings) -> AIBackend:
    return _dashscope(settings)
