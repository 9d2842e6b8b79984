"""Light ramps and background sources, exactly as the official IC-Light demos define them.

fc (``gradio_demo.py``, "Lighting Preference (Initial Latent)"): a grey ramp used as the img2img
initial image (the demo encodes it and denoises from it with strength 0.9):
    left  = linspace(255, 0, W) per row      right  = linspace(0, 255, W)
    top   = linspace(255, 0, H) per column   bottom = linspace(0, 255, H)
fbc (``gradio_demo_bg.py``, "Background Source"): the background condition image:
    upload / upload_flip (the uploaded background, mirrored left-right)
    upload_or_ambient (not in the demo; the default): the uploaded background when there is one, else Ambient,
    so the defaults run without an upload
    left / right / top / bottom = the same ramps between 224 and 32, ambient = constant 64.
Ramps are float ``linspace`` values truncated by ``astype(uint8)``, replicated to 3 channels.
``flip_foreground`` (not in the demo) uses the prepared foreground, mirrored, as the background.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .errors import ICLightError
from .images import to_uint8_rgb

FC_LIGHTS = {"none": "None", "left": "Left Light", "right": "Right Light", "top": "Top Light",
             "bottom": "Bottom Light"}
FBC_SOURCES = {"upload_or_ambient": "Use Background Image, else Ambient", "upload": "Use Background Image",
               "upload_flip": "Use Flipped Background Image", "left": "Left Light", "right": "Right Light",
               "top": "Top Light", "bottom": "Bottom Light",
               "ambient": "Ambient", "flip_foreground": "Use Flipped Foreground"}
FBC_AMBIENT = 64
FBC_DEFAULT = "upload_or_ambient"


def _parse(value: Optional[str], table: dict, what: str) -> str:
    text = (value or "none").strip().lower()
    for key, label in table.items():
        if text in (key, label.lower(), key.replace("_", " ")):
            return key
    raise ICLightError(f"Unknown IC-Light {what} {value!r}; use one of: {', '.join(table.values())}.")


def parse_fc_light(value: Optional[str]) -> str:
    """Key ('none', 'left', ...) from a key or a demo label (case-insensitive)."""
    return _parse(value, FC_LIGHTS, "lighting preference")


def parse_fbc_source(value: Optional[str]) -> str:
    return _parse(value or FBC_DEFAULT, FBC_SOURCES, "background source")


def ramp(direction: str, width: int, height: int, bright: float, dark: float) -> np.ndarray:
    """uint8 [H, W, 3] ramp, brightest on the ``direction`` side ('left', 'right', 'top', 'bottom')."""
    if direction in ("left", "right"):
        line = np.linspace(bright, dark, width) if direction == "left" else np.linspace(dark, bright, width)
        image = np.tile(line, (height, 1))
    elif direction in ("top", "bottom"):
        line = np.linspace(bright, dark, height) if direction == "top" else np.linspace(dark, bright, height)
        image = np.tile(line[:, None], (1, width))
    else:
        raise ICLightError(f"Unknown light direction {direction!r}; use left, right, top or bottom.")
    return np.stack((image,) * 3, axis=-1).astype(np.uint8)


def fc_light_image(direction: Optional[str], width: int, height: int) -> Optional[np.ndarray]:
    """The fc lighting-preference initial image (uint8 [H, W, 3]), or None for 'none'."""
    key = parse_fc_light(direction)
    return None if key == "none" else ramp(key, width, height, 255, 0)


def fbc_background(source: Optional[str], width: int, height: int, uploaded: Optional[np.ndarray] = None,
                   foreground: Optional[np.ndarray] = None) -> np.ndarray:
    """The fbc background image (uint8 [H, W, 3] for generated sources; the upload keeps its own size)."""
    key = parse_fbc_source(source)
    if key == "upload_or_ambient":
        key = "upload" if uploaded is not None else "ambient"
    if key in ("upload", "upload_flip"):
        if uploaded is None:
            raise ICLightError(f"IC-Light fbc with background source '{FBC_SOURCES[key]}' needs a background image: "
                               "upload one, or choose a light direction or 'Ambient' as the background source.")
        image = _rgb(uploaded)
        return np.ascontiguousarray(np.fliplr(image)) if key == "upload_flip" else image
    if key == "flip_foreground":
        if foreground is None:
            raise ICLightError("IC-Light background source 'Use Flipped Foreground' needs a foreground image.")
        return np.ascontiguousarray(np.fliplr(_rgb(foreground)))
    if key == "ambient":
        return np.zeros((height, width, 3), dtype=np.uint8) + FBC_AMBIENT
    return ramp(key, width, height, 224, 32)



def _rgb(image) -> np.ndarray:
    return to_uint8_rgb(image)[..., :3]
