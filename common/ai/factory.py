"""The backends a worker can run jobs on, by path ("dashscope", "fc")."""

from __future__ import annotations

from common.ai.base import AIBackend
from common.ai.dashscope_backend import DashScopeBackend
from common.ai.fc_backend import FunctionComputeBackend
from common.settings import Settings


def backends(settings: Settings) -> dict[str, AIBackend]:
    """Every configured path; a job runs on the one recorded when it was submitted."""
    key = settings.qwen_api_key.get_secret_value() if settings.qwen_api_key else ""
    available: dict[str, AIBackend] = {
        "dashscope": DashScopeBackend(api_key=key, base_url=settings.dashscope_http_base_url,
                                      timeout=settings.upstream_timeout_seconds)}
    if settings.function_compute_configured:
        available["fc"] = FunctionComputeBackend(
            qwen_endpoint=settings.fc_qwen_endpoint, wanx_endpoint=settings.fc_wanx_endpoint,
            token=settings.fc_auth_token.get_secret_value(), timeout=settings.fc_timeout_seconds,
            price_per_request=settings.fc_price_per_request,
            price_per_second=settings.fc_price_per_second)
    return available
