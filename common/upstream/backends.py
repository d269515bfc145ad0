"""The backends a worker can run jobs on, by path ("dashscope", "fc")."""

from __future__ import annotations

from common.infra.settings import Settings
from common.upstream.dashscope_backend import DashScopeBackend
from common.upstream.failures import BACKEND_NOT_CONFIGURED, UpstreamError
from common.upstream.function_compute import FunctionComputeBackend
from common.upstream.interface import AIBackend


def backends(settings: Settings, *, pool_size: int = 64) -> dict[str, AIBackend]:
    """Every configured path; a job runs on the one recorded when it was submitted.
    `pool_size`: keep-alive connections to DashScope (the worker's concurrency)."""
    key = settings.qwen_api_key.get_secret_value() if settings.qwen_api_key else ""
    available: dict[str, AIBackend] = {
        "dashscope": DashScopeBackend(api_key=key, base_url=settings.dashscope_http_base_url,
                                      timeout=settings.upstream_timeout_seconds,
                                      pool_size=pool_size)}
    if settings.function_compute_configured:
        available["fc"] = FunctionComputeBackend(
            qwen_endpoint=settings.fc_qwen_endpoint, wanx_endpoint=settings.fc_wanx_endpoint,
            token=settings.fc_auth_token.get_secret_value(), timeout=settings.fc_timeout_seconds,
            price_per_request=settings.fc_price_per_request,
            price_per_second=settings.fc_price_per_second)
    return available


def backend_for(available: dict[str, AIBackend], path: str) -> AIBackend:
    """The backend of the path a job was submitted for; never another one."""
    backend = available.get(path)
    if backend is None:
        raise UpstreamError(code=BACKEND_NOT_CONFIGURED, status=None, retryable=False,
                            message=f"This worker has no {path!r} backend configured")
    return backend
