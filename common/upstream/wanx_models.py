"""What each Wanx text-to-image model accepts (dashscope-protocol.md section 5.1)."""

from __future__ import annotations

import dataclasses

V1_SIZES = ("1024*1024", "720*1280", "768*1152", "1280*720")
V1_STYLES = ("<auto>", "<photography>", "<portrait>", "<3d cartoon>", "<anime>",
             "<oil painting>", "<watercolor>", "<sketch>", "<chinese painting>",
             "<flat illustration>")
NEGATIVE_PROMPT_MAX = 500
MAX_IMAGES = 4
SEED_MAX = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class WanxFamily:
    prompt_max: int
    fixed_sizes: tuple[str, ...] = ()  # empty: any width and height in side_range
    side_range: tuple[int, int] = (512, 1440)
    styles: tuple[str, ...] = ()  # empty: the model takes no style
    prompt_extend: bool = False  # supports prompt_extend and watermark

    def size_error(self, size: str) -> str | None:
        if self.fixed_sizes:
            return None if size in self.fixed_sizes else \
                f"size must be one of {', '.join(self.fixed_sizes)}"
        try:
            width, height = (int(side) for side in size.split("*"))
        except ValueError:
            return "size must be WIDTH*HEIGHT, e.g. 1024*1024"
        low, high = self.side_range
        if not (low <= width <= high and low <= height <= high):
            return f"width and height must each be between {low} and {high}"
        return None


WANX_V1 = WanxFamily(prompt_max=500, fixed_sizes=V1_SIZES, styles=V1_STYLES)
WANX_V2 = WanxFamily(prompt_max=800, prompt_extend=True)


def family_of(model: str) -> WanxFamily:
    return WANX_V1 if model == "wanx-v1" else WANX_V2
