"""The Qwen and Wanx functions for Alibaba Function Compute (Python runtime, HTTP trigger).

Both call DashScope through the same backend the worker uses (common/upstream/dashscope_backend.py),
so a call classifies, retries and counts tokens alike on either path. Settings come from the
function's environment: DASHSCOPE_API_KEY, DASHSCOPE_HTTP_BASE_URL, FC_AUTH_TOKEN,
UPSTREAM_TIMEOUT_SECONDS.

Wanx: the function never waits for a task. `action: "submit"` starts one and returns its id;
`action: "status"` makes exactly one task query; `action: "cancel"` asks DashScope to cancel.
The worker schedules the status calls within the account's task-query budget, so no worker
slot and no function instance sleeps while DashScope works.
"""

from __future__ import annotations

import functools
import os

from common.upstream.dashscope_backend import DashScopeBackend
from common.upstream.failures import UpstreamError
from common.upstream.interface import ChatRequest, TaskRequest
from fc.contract import FunctionError, handle, require

WANX_ACTIONS = ("submit", "status", "cancel")


@functools.cache
def backend() -> DashScopeBackend:
    """One per function instance, reused across invocations (keep-alive connections)."""
    return DashScopeBackend(
        api_key=os.environ.get("DASHSCOPE_API_KEY") or os.environ.get("QWEN_API_KEY", ""),
        base_url=os.environ.get("DASHSCOPE_HTTP_BASE_URL",
                                "https://dashscope.aliyuncs.com/api/v1"),
        timeout=float(os.environ.get("UPSTREAM_TIMEOUT_SECONDS", "60")), pool_size=8)


def qwen_handler(event, context=None) -> dict:
    """Chat completion: {"model", "messages", "parameters"} -> the assistant message."""
    return handle(event, _chat)


def wanx_handler(event, context=None) -> dict:
    """Wanx task steps: submit, status or cancel (see the module docstring)."""
    return handle(event, _wanx)


def _chat(request: dict) -> tuple[dict, dict]:
    messages = require(request, "messages", list)
    if not messages or not all(isinstance(m, dict) and isinstance(m.get("content"), str)
                               for m in messages):
        raise FunctionError(400, "InvalidParameter", "messages must be a non-empty list of "
                            "{role, content}")
    try:
        result = backend().chat(ChatRequest(
            model=require(request, "model", str), messages=messages,
            parameters=require(request, "parameters", dict, optional=True) or {},
            correlation_id=request.get("correlation_id"), user_id=request.get("user_id")))
    except UpstreamError as error:
        raise FunctionError.from_upstream(error) from error
    usage = result.usage
    return ({"message": result.message, "finish_reason": result.finish_reason,
             "request_id": result.upstream_request_id},
            {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
             "total_tokens": usage.total_tokens})


def _wanx(request: dict) -> tuple[dict, dict]:
    action = request.get("action") or "submit"
    if action not in WANX_ACTIONS:
        raise FunctionError(400, "InvalidParameter", f"action must be one of {WANX_ACTIONS}")
    parameters = dict(require(request, "parameters", dict, optional=True) or {})
    no_tokens = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    try:
        if action == "submit":
            negative = parameters.pop("negative_prompt", None)
            task = backend().submit_task(TaskRequest(
                model=require(request, "model", str), prompt=require(request, "prompt", str),
                negative_prompt=negative, parameters=parameters,
                correlation_id=request.get("correlation_id"), user_id=request.get("user_id")))
            return {"task_id": task.task_id, "task_status": task.status}, no_tokens
        task_id = parameters.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            raise FunctionError(400, "InvalidParameter", "parameters.task_id is required")
        if action == "cancel":
            return {"canceled": backend().cancel_task(task_id, request.get("model"))}, no_tokens
        task = backend().fetch_task(task_id, request.get("model"))
    except UpstreamError as error:
        raise FunctionError.from_upstream(error) from error
    return ({"task_id": task.task_id, "task_status": task.status, "results": task.results,
             "code": task.code, "message": task.message,
             "usage": {"image_count": task.image_count}}, no_tokens)
