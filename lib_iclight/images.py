"""Image helpers with the official demo's exact arithmetic (numpy uint8 [H, W, C] in, out).

- ``resize_and_center_crop``: scale to cover the target (factor = max(W/w, H/h)), round the size,
  PIL LANCZOS resize, crop the centre box (left, top) = round((w'-W)/2, (h'-H)/2), W x H.
- ``fill_grey``: ``clip(127 + (rgb - 127 + sigma) * alpha, 0, 255).astype(uint8)`` in float32
  (the demo's ``run_rmbg``; sigma 0 for relighting).
- ``images_to_tensor``: ``x / 127 - 1`` (the demo's ``numpy2pytorch``: grey 127 maps exactly to 0),
  returned as float32 [B, 3, H, W].
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image


def resize_and_center_crop(image: np.ndarray, width: int, height: int) -> np.ndarray:
    pil = Image.fromarray(image)
    w, h = pil.size
    scale = max(width / w, height / h)
    rw, rh = int(round(w * scale)), int(round(h * scale))
    resized = pil.resize((rw, rh), Image.LANCZOS)
    # The demo crops the float box ((rw-W)/2, (rh-H)/2, (rw+W)/2, (rh+H)/2), which PIL rounds corner by
    # corner; with an odd margin that gives W±1 pixels. Same left/top corner here, exact size always.
    left, top = int(round((rw - width) / 2)), int(round((rh - height) / 2))
    return np.array(resized.crop((left, top, left + width, top + height)))


def fill_grey(rgb: np.ndarray, alpha: np.ndarray, sigma: float = 0.0) -> np.ndarray:
    """Composite ``rgb`` (uint8 [H, W, 3]) over grey 127 with ``alpha`` (float [H, W] or [H, W, 1] in [0, 1])."""
    alpha = np.asarray(alpha, dtype=np.float32)
    if alpha.ndim == 2:
        alpha = alpha[..., None]
    result = 127 + (rgb.astype(np.float32) - 127 + sigma) * alpha
    return result.clip(0, 255).astype(np.uint8)


def images_to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 [H, W, 3] images of one size -> float32 [B, 3, H, W] with ``x / 127 - 1``."""
    stacked = np.stack([np.asarray(i)[..., :3] for i in images], axis=0)
    return (torch.from_numpy(stacked).float() / 127.0 - 1.0).movedim(-1, 1).contiguous()


def to_uint8_rgb(image) -> np.ndarray:
    """PIL image or array -> uint8 array [H, W, 3 or 4] (grey images become RGB, transparency kept)."""
    if isinstance(image, Image.Image):
        transparent = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
        image = image.convert("RGBA" if transparent else "RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.size and array.max() <= 1.0:
            array = (array * 255.0).round()
        array = array.clip(0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = np.stack((array,) * 3, axis=-1)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        from .errors import ICLightError
        raise ICLightError(f"IC-Light expects an RGB or RGBA image, got an array of shape {array.shape}.")
    return array
