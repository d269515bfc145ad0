"""The chat answer shapes the Function Compute backend reads (end to end in
tests/integration/test_function_compute.py; here the rules at their edges)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from common.upstream.failures import UpstreamError
from common.upstream.function_compute import chat_answer

MESSAGE = {"role": "assistant", "content": "hi"}
COST = Decimal("0.001")


def test_token_usage_wins_over_the_usage_inside_data():
    data = {"choices": [{"message": MESSAGE, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
    _, _, usage, _ = chat_answer(data, {"input_tokens": 7, "output_tokens": 3,
                                        "total_tokens": 10}, COST)
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (7, 3, 10)


def test_the_openai_shape_reads_its_id_and_usage_names():
    data = {"id": "chatcmpl-1", "choices": [{"message": MESSAGE, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2}}
    message, finish, usage, request_id = chat_answer(data, None, COST)
    assert (message, finish, request_id) == (MESSAGE, "length", "chatcmpl-1")
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (5, 2, 7)


@pytest.mark.parametrize("data", [
    None, [], {}, {"choices": []}, {"choices": [{"finish_reason": "stop"}]},
    {"output": {}}, {"output": {"choices": []}},
    {"message": {"role": "assistant", "content": None}, "finish_reason": "stop"},
    {"message": MESSAGE, "finish_reason": "stop", "usage": {"input_tokens": "many"}},
], ids=["none", "list", "empty", "no-choice", "choice-without-message", "empty-output",
        "output-without-choice", "content-not-text", "usage-not-a-number"])
def test_anything_else_is_a_malformed_response_that_keeps_its_cost(data):
    with pytest.raises(UpstreamError) as raised:
        chat_answer(data, None, COST)
    assert raised.value.code == "FunctionMalformedResponse"
    assert raised.value.compute_cost == COST


def test_tool_calls_in_dashscopes_shape_become_openais():
    native_call = {"function": {"name": "f", "arguments": '{"a": 1}'}, "index": 0,
                   "id": "call_1", "type": "function"}
    data = {"output": {"choices": [{"message": {"role": "assistant", "content": None,
                                                "tool_calls": [native_call]},
                                    "finish_reason": "stop"}]}, "usage": {}}
    message, finish, _, _ = chat_answer(data, None, COST)
    assert finish == "tool_calls"
    assert message == {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]}
