"""What each Wan model accepts, and DashScope's account limits for it: one table per kind of
task in settings (IMAGE_MODELS, IMAGE_EDIT_MODELS, VIDEO_MODELS), built from these types.

Rules come from dashscope-protocol.md section 5 (wanx-v1, wanx2.x) and dashscope-protocol-2.md
sections 5 to 7 (wan2.2, wan2.5, image editing, video). Each model's rules are data, so a model
DashScope adds is a settings change, not a code change.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

V1_SIZES = ("1024*1024", "720*1280", "768*1152", "1280*720")
V1_STYLES = ("<auto>", "<photography>", "<portrait>", "<3d cartoon>", "<anime>",
             "<oil painting>", "<watercolor>", "<sketch>", "<chinese painting>",
             "<flat illustration>")
NEGATIVE_PROMPT_MAX = 500
MAX_IMAGES = 4
SEED_MAX = 2**31 - 1


class TaskModel(BaseModel):
    """DashScope's account-wide limits for one async-task model (0 = unlimited)."""

    submit_qps: float = Field(default=2.0, ge=0)
    concurrency: int = Field(default=2, ge=0)
    prompt_max: int = Field(default=800, gt=0)


class ImageModelLimits(TaskModel):
    """A text-to-image model: its limits and the parameters it accepts."""

    fixed_sizes: tuple[str, ...] = ()  # non-empty: only these sizes
    side_range: tuple[int, int] | None = (512, 1440)  # each side, when sizes are free
    # Total pixels and aspect ratio (wan2.5: 768*768 to 1440*1440, 1:4 to 4:1) instead of sides.
    pixel_range: tuple[int, int] | None = None
    max_aspect: float | None = None
    styles: tuple[str, ...] = ()  # empty: the model takes no style
    prompt_extend: bool = True  # supports prompt_extend and watermark
    max_n: int = Field(default=MAX_IMAGES, ge=1, le=MAX_IMAGES)

    def size_error(self, size: str) -> str | None:
        if self.fixed_sizes:
            return None if size in self.fixed_sizes else \
                f"size must be one of {', '.join(self.fixed_sizes)}"
        try:
            width, height = (int(side) for side in size.split("*"))
        except ValueError:
            return "size must be WIDTH*HEIGHT, e.g. 1024*1024"
        if self.side_range is not None:
            low, high = self.side_range
            if not (low <= width <= high and low <= height <= high):
                return f"width and height must each be between {low} and {high}"
        if self.pixel_range is not None:
            low, high = self.pixel_range
            if not low <= width * height <= high:
                return f"width*height must be between {low} and {high} pixels"
        if self.max_aspect is not None and \
                max(width, height) > self.max_aspect * min(width, height):
            return f"the aspect ratio must be between 1:{self.max_aspect:g} and " \
                   f"{self.max_aspect:g}:1"
        return None


EditParameter = Literal["strength", "top_scale", "bottom_scale", "left_scale", "right_scale",
                        "upscale_factor", "is_sketch"]


class EditFunction(BaseModel):
    """One `input.function` of an image-edit model (dashscope-protocol-2.md section 6.2)."""

    mask: bool = False  # needs mask_image_url
    prompt: bool = True  # needs a prompt (DashScope requires one for every function)
    parameters: tuple[EditParameter, ...] = ()


# The ranges of the edit parameters (dashscope-protocol-2.md section 6.2, UNCONFIRMED there).
EDIT_PARAMETER_RANGES: dict[str, tuple[float, float]] = {
    "strength": (0.0, 1.0), "top_scale": (1.0, 2.0), "bottom_scale": (1.0, 2.0),
    "left_scale": (1.0, 2.0), "right_scale": (1.0, 2.0), "upscale_factor": (1, 4)}

WANX21_EDIT_FUNCTIONS: dict[str, EditFunction] = {
    "stylization_all": EditFunction(parameters=("strength",)),
    "stylization_local": EditFunction(),
    "description_edit": EditFunction(parameters=("strength",)),
    "description_edit_with_mask": EditFunction(mask=True),
    "remove_watermark": EditFunction(),
    "expand": EditFunction(parameters=("top_scale", "bottom_scale", "left_scale",
                                       "right_scale")),
    "super_resolution": EditFunction(parameters=("upscale_factor",)),
    "colorization": EditFunction(),
    "doodle": EditFunction(parameters=("is_sketch",)),
    "control_cartoon_feature": EditFunction(),
}


class ImageEditModel(TaskModel):
    functions: dict[str, EditFunction] = Field(
        default_factory=lambda: dict(WANX21_EDIT_FUNCTIONS))
    max_n: int = Field(default=MAX_IMAGES, ge=1, le=MAX_IMAGES)


class VideoModel(TaskModel):
    """A video model: what it takes as input, and the sizes, tiers and durations it makes."""

    input: Literal["text", "image", "keyframes"] = "text"  # t2v, i2v, first/last frame
    sizes: tuple[str, ...] = ()  # t2v: W*H values
    resolutions: tuple[str, ...] = ()  # i2v and keyframes: 480P, 720P, 1080P
    durations: tuple[int, ...] = (5,)
    prompt_extend: bool = True  # supports prompt_extend and watermark

    @property
    def default_duration(self) -> int:
        """DashScope's default: 5 s where the model makes 5-second videos."""
        return 5 if 5 in self.durations else self.durations[0]


def _image(**rules) -> ImageModelLimits:
    return ImageModelLimits(**rules)


def default_image_models() -> dict[str, ImageModelLimits]:
    """Text-to-image models (dashscope-protocol-2.md section 5.1 and 5.4): 2 submits/s and
    2 concurrent tasks each (UNCONFIRMED for wan2.2/wan2.5; wanx-v1: 1 concurrent)."""
    wan25 = {"side_range": None, "pixel_range": (768 * 768, 1440 * 1440), "max_aspect": 4.0,
             "prompt_max": 2000}
    return {
        "wanx-v1": _image(concurrency=1, prompt_max=500, fixed_sizes=V1_SIZES,
                          styles=V1_STYLES, prompt_extend=False),
        "wanx2.1-t2i-turbo": _image(),
        "wanx2.1-t2i-plus": _image(),
        "wanx2.0-t2i-turbo": _image(),
        "wan2.2-t2i-flash": _image(),
        "wan2.2-t2i-plus": _image(),
        "wan2.5-t2i-preview": _image(**wan25),
    }


def default_image_edit_models() -> dict[str, ImageEditModel]:
    return {"wanx2.1-imageedit": ImageEditModel()}


def default_video_models() -> dict[str, VideoModel]:
    """dashscope-protocol-2.md section 7.3; limits section 7.5 (2 submits/s, 2 concurrent,
    UNCONFIRMED)."""
    wan22_sizes = ("832*480", "480*832", "624*624", "1920*1080", "1080*1920", "1440*1440",
                   "1632*1248", "1248*1632")
    wan21_turbo_sizes = ("832*480", "480*832", "624*624", "1280*720", "720*1280", "960*960",
                         "1088*832", "832*1088")
    wan21_plus_sizes = ("1280*720", "720*1280", "960*960", "1088*832", "832*1088")
    wan25_sizes = ("832*480", "480*832", "1280*720", "720*1280", "1920*1080", "1080*1920")
    return {
        "wanx2.1-t2v-turbo": VideoModel(sizes=wan21_turbo_sizes, durations=(3, 4, 5)),
        "wanx2.1-t2v-plus": VideoModel(sizes=wan21_plus_sizes),
        "wan2.2-t2v-plus": VideoModel(sizes=wan22_sizes),
        "wan2.5-t2v-preview": VideoModel(sizes=wan25_sizes, durations=(5, 10),
                                         prompt_max=1500),
        "wanx2.1-i2v-turbo": VideoModel(input="image", resolutions=("480P", "720P"),
                                        durations=(3, 4, 5)),
        "wanx2.1-i2v-plus": VideoModel(input="image", resolutions=("720P",)),
        "wan2.2-i2v-flash": VideoModel(input="image", resolutions=("480P", "720P", "1080P")),
        "wan2.2-i2v-plus": VideoModel(input="image", resolutions=("480P", "1080P")),
        "wan2.5-i2v-preview": VideoModel(input="image", resolutions=("480P", "720P", "1080P"),
                                         durations=(5, 10), prompt_max=1500),
        "wanx2.1-kf2v-plus": VideoModel(input="keyframes", resolutions=("720P",)),
        "wan2.2-kf2v-flash": VideoModel(input="keyframes",
                                        resolutions=("480P", "720P", "1080P")),
    }
