"""The input-image latent of an edit model, built per image and per generation size.

Resize rule (stated to users): the image is resized to the generation's width x height with Lanczos, as the
WebUI's img2img "Just resize" and diffusers' pipelines do, when its aspect ratio is within
:data:`ASPECT_TOLERANCE` (10%) of the generation's; a wider mismatch would distort it and is refused, as is an
image under :data:`MIN_SIDE` pixels on a side. In img2img without an image of its own the feature uses the
WebUI's source image, already resized by the img2img resize mode.

Latent: ``x = rgb / 255 · 2 − 1`` → VAE posterior mode (:func:`.vae.posterior_mode`) → × the model's scale
factor for families with ``scale_image_latent`` (CosXL Edit), unscaled otherwise (see :mod:`.edit_family`).
"""
from __future__ import annotations

from typing import Callable, List, Sequence

import numpy as np
import torch

from .edit_family import EditFamily
from .errors import ConcatError

ASPECT_TOLERANCE = 0.10
MIN_SIDE = 16


def to_rgb_array(image, where: str) -> np.ndarray:
    """uint8 [H, W, 3] from a PIL image or an array (grey, RGB or RGBA; alpha dropped)."""
    if image is None:
        raise ConcatError(f"{where}: no image given")
    if hasattr(image, "convert"):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ConcatError(f"{where}: expected an RGB image, got an array of shape {array.shape}")
    if array.dtype != np.uint8:
        array = np.clip(array.astype(np.float32), 0, 255).astype(np.uint8)
    return array[..., :3]


def check_size(rgb: np.ndarray, width: int, height: int, where: str) -> None:
    """Raise :class:`ConcatError` unless the resize rule (module doc) can serve ``rgb`` at width x height."""
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ConcatError(f"{where} is {w}x{h} pixels; it needs at least {MIN_SIDE} pixels on each side.")
    ratio, want = w / h, width / height
    if abs(ratio / want - 1) > ASPECT_TOLERANCE:
        raise ConcatError(f"{where} is {w}x{h} (aspect {ratio:.3f}) but the image to generate is {width}x{height} "
                          f"(aspect {want:.3f}); resizing would distort it by more than "
                          f"{ASPECT_TOLERANCE:.0%}. Set width and height to the image's aspect ratio "
                          f"(e.g. {width}x{max(8, round(width / ratio / 8) * 8)}), or crop the image.")


def resize_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Lanczos resize of uint8 RGB to width x height (the same array when it already has that size)."""
    if rgb.shape[:2] == (height, width):
        return rgb
    from PIL import Image
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.LANCZOS), dtype=np.uint8)


def to_model_range(images: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 RGB images of one size -> float32 [B, 3, H, W] in [-1, 1] (the WebUI's ``x / 255 · 2 − 1``)."""
    batch = np.stack([np.asarray(i, dtype=np.float32) / 255.0 for i in images])
    return torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2))) * 2 - 1


def image_latent(x: torch.Tensor, encode_mode: Callable[[torch.Tensor], torch.Tensor], scale_factor: float,
                 family: EditFamily) -> torch.Tensor:
    """The edit conditioning of images ``x`` [B, 3, H, W] in [-1, 1]: the posterior mode, scaled per family."""
    latent = encode_mode(x)
    return latent * scale_factor if family.scale_image_latent else latent


class EditImages:
    """Input images checked once (:func:`check_size` at the first-pass size) and turned into the concat latent at
    any size: ``latent(width, height)`` -> [N, 4, height/8, width/8], N = number of images (identical images are
    encoded once)."""

    def __init__(self, images: Sequence, width: int, height: int, family: EditFamily,
                 encode_mode: Callable[[torch.Tensor], torch.Tensor], scale_factor: float, where: str):
        if not images:
            raise ConcatError(f"{where}: no image given")
        self.rgb: List[np.ndarray] = []
        for i, image in enumerate(images):
            name = where if len(images) == 1 else f"{where} #{i + 1}"
            rgb = to_rgb_array(image, name)
            check_size(rgb, width, height, name)
            self.rgb.append(rgb)
        self.family, self.encode_mode, self.scale_factor = family, encode_mode, scale_factor

    def latent(self, width: int, height: int) -> torch.Tensor:
        unique, index = [], []
        for rgb in self.rgb:
            for j, seen in enumerate(unique):
                if seen.shape == rgb.shape and np.array_equal(seen, rgb):
                    index.append(j)
                    break
            else:
                unique.append(rgb)
                index.append(len(unique) - 1)
        x = to_model_range([resize_rgb(rgb, width, height) for rgb in unique])
        latents = image_latent(x, self.encode_mode, self.scale_factor, self.family)
        return latents[index]
