"""Tool calls and structured output, deterministic (dashscope-protocol-2.md sections 2.1-2.5).

A prompt chooses what the model calls: `[[emulator: tool=NAME]]` (several, comma-separated,
are parallel calls), with `args=<JSON object>` (one per call, separated by `|`; the JSON may
not contain `]` or `;`, which end a directive). Without `args` the arguments are built from
the tool's JSON-schema parameters: each required property gets its type's first value (an
enum's first member, "x", 1, true, ...). `tool_choice` decides as the docs say: "none" never
calls; a named function is always called; "required" calls the directive's tool or the first.
Once the last message is a `tool` message, the model answers in text, naming the results.

`response_format` json_object answers `{"echo": <the last user text>}`; json_schema answers an
instance of the schema built the same way as arguments. Both parse.
"""

from __future__ import annotations

import json
import uuid

from emulator.errors import EmulatorError


def planned_calls(parameters: dict, messages: list[dict], found: dict[str, str]) -> list[dict]:
    """The tool calls this request answers with ([] for a text answer): id, name, arguments."""
    tools = {t.get("function", {}).get("name"): t.get("function", {})
             for t in parameters.get("tools") or [] if isinstance(t, dict)}
    choice = parameters.get("tool_choice", "auto")
    if not tools or choice == "none" or (messages and messages[-1].get("role") == "tool"):
        return []
    names = [n.strip() for n in found.get("tool", "").split(",") if n.strip()]
    if isinstance(choice, dict):
        names = [(choice.get("function") or {}).get("name")]
    elif choice == "required" and not names:
        names = [next(iter(tools))]
    if not parameters.get("parallel_tool_calls"):
        names = names[:1]
    given = found["args"].split("|") if found.get("args") else []
    calls = []
    for index, name in enumerate(names):
        if name not in tools:
            raise EmulatorError(400, "InvalidParameter",
                                f"The tool {name!r} is not among the request's tools.")
        if index < len(given):
            try:
                arguments = json.loads(given[index])
            except ValueError:
                raise EmulatorError(400, "InvalidParameter",
                                    f"emulator args for {name} is not JSON") from None
        else:
            arguments = instance(tools[name].get("parameters") or {"type": "object"})
        calls.append({"id": "call_" + uuid.uuid4().hex[:22], "name": name,
                      "arguments": json.dumps(arguments, ensure_ascii=False)})
    return calls


def instance(schema: dict):
    """A deterministic value the schema accepts (for the schemas tests and agents write)."""
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for combined in ("anyOf", "oneOf", "allOf"):
        if schema.get(combined):
            return instance(schema[combined][0])
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties") or {}
        required = schema.get("required") or list(properties)
        return {name: instance(properties.get(name, {})) for name in required}
    if kind == "array":
        return [instance(schema.get("items") or {"type": "string"})] * int(
            schema.get("minItems", 1))
    return {"string": "x", "integer": 1, "number": 1, "boolean": True,
            "null": None}.get(kind, "x")


def tool_results_reply(messages: list[dict]) -> str:
    """The answer after tool results: each result, in order."""
    results = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(item.get("text", "") for item in content)
        results.append(str(content))
    return "Tool results: " + "; ".join(reversed(results))


def structured_reply(response_format: dict | None, messages_text: list[str],
                     last_user: str) -> str | None:
    """The JSON answer `response_format` asks for (None: a text answer)."""
    kind = (response_format or {}).get("type", "text")
    if kind == "json_object":
        if not any("json" in text.lower() for text in messages_text):
            # DashScope's message (dashscope-protocol-2.md section 2.5).
            raise EmulatorError(400, "InvalidParameter",
                                "'messages' must contain the word 'json' in some form, to use "
                                "'response_format' of type 'json_object'.")
        return json.dumps({"echo": last_user}, ensure_ascii=False)
    if kind == "json_schema":
        schema = ((response_format or {}).get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise EmulatorError(400, "InvalidParameter",
                                "response_format.json_schema.schema is required.")
        return json.dumps(instance(schema), ensure_ascii=False)
    if kind != "text":
        raise EmulatorError(400, "InvalidParameter",
                            f"Unknown response_format type: {kind}")
    return None
