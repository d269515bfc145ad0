"""The text models the emulator knows, and the streaming and thinking rules each one has.

Which models think, which must stream and which only stream increments follow
dashscope-protocol-2.md §1.2 and §1.5 (and part 1 §3.1 for the defaults).
"""

from __future__ import annotations

import dataclasses
import re

from emulator.errors import EmulatorError

# Never thinks; the commercial models' defaults: result_format text, cumulative streams.
PLAIN = "plain"
# Thinks only with enable_thinking (default off): the commercial hybrids, §1.5.
HYBRID = "hybrid"
# Thinks unless enable_thinking=false: Qwen3 open-source and Qwen3.5+, §1.5.
HYBRID_ON = "hybrid-on"
# Always thinks and ignores the flag: QwQ, `*-thinking-*`, deepseek-r1, §1.5.
THINKING_ONLY = "thinking-only"

# §1.5 [3P]: what DashScope answers a non-streaming call to thinking that only streams.
NON_STREAMING_THINKING = "parameter.enable_thinking must be set to false for non-streaming calls"
# §1.5 [3P]: what models that only stream increments answer `incremental_output: false`.
INCREMENTAL_ONLY = "This model only supports incremental_output set to True."


@dataclasses.dataclass(frozen=True)
class TextModel:
    name: str
    output_limit: int = 8192
    thinking: str = PLAIN
    # QwQ, Qwen3 open-source, Qwen3.5+: incremental_output defaults to true and cannot be
    # false; they also answer in result_format "message" by default (part 1 §3.1).
    incremental_only: bool = False

    def thinks(self, parameters: dict) -> bool:
        """Whether this request runs in thinking mode."""
        if self.thinking == THINKING_ONLY:
            return True
        if self.thinking == PLAIN:
            return False
        requested = parameters.get("enable_thinking")
        return self.thinking == HYBRID_ON if requested is None else bool(requested)

    def default_incremental(self, thinking: bool) -> bool:
        # Thinking mode "only supports incremental output" (§1.2); commercial models
        # default to cumulative text (part 1 §3.4).
        return self.incremental_only or thinking

    def default_result_format(self) -> str:
        return "message" if self.incremental_only else "text"


_TABLE = {model.name: model for model in [
    TextModel("qwen-turbo", thinking=HYBRID),
    TextModel("qwen-plus", thinking=HYBRID),
    TextModel("qwen-plus-latest", thinking=HYBRID),
    TextModel("qwen-flash", thinking=HYBRID),
    TextModel("qwen-max"),
    TextModel("qwen3-max"),
    TextModel("qwen3-max-preview", thinking=HYBRID),
    TextModel("qwen3-235b-a22b", thinking=HYBRID_ON, incremental_only=True),
    TextModel("qwen3-32b", thinking=HYBRID_ON, incremental_only=True),
    TextModel("qwen3-8b", thinking=HYBRID_ON, incremental_only=True),
    TextModel("qwen3.5-plus", thinking=HYBRID_ON, incremental_only=True),
    TextModel("qwen3-235b-a22b-thinking-2507", thinking=THINKING_ONLY, incremental_only=True),
    TextModel("qwq-plus", thinking=THINKING_ONLY, incremental_only=True),
    TextModel("qwq-32b", thinking=THINKING_ONLY, incremental_only=True),
    TextModel("deepseek-r1", thinking=THINKING_ONLY, incremental_only=True),
]}
_QWEN3_OPEN_SOURCE = re.compile(r"^qwen3-\d+(\.\d+)?b")


def lookup(name) -> TextModel:
    """The model's rules, or the 400/404 DashScope answers for a missing or unknown model."""
    if not name:
        raise EmulatorError(400, "BadRequest.EmptyModel", "Required parameter \"model\" missing.")
    if not isinstance(name, str):
        raise EmulatorError(404, "ModelNotFound", "Model can not be found.")
    if name in _TABLE:
        return _TABLE[name]
    # Families not listed one by one keep their family's rules.
    if "-thinking" in name or name.startswith("qwq"):
        return TextModel(name, thinking=THINKING_ONLY, incremental_only=True)
    if _QWEN3_OPEN_SOURCE.match(name) or name.startswith(("qwen3.5", "qwen3.6")):
        return TextModel(name, thinking=HYBRID_ON, incremental_only=True)
    if name.startswith("qwen"):
        return TextModel(name)
    raise EmulatorError(404, "ModelNotFound", "Model can not be found.")


def check_streaming(model: TextModel, thinking: bool, streaming: bool,
                    incremental: bool) -> None:
    """The 400s of §1.5: thinking without a stream, or cumulative output where it cannot be."""
    if thinking and not streaming:
        raise EmulatorError(400, "InvalidParameter", NON_STREAMING_THINKING)
    if streaming and not incremental and (model.incremental_only or thinking):
        raise EmulatorError(400, "InvalidParameter", INCREMENTAL_ONLY)
