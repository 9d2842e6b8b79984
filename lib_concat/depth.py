"""SD 2 depth conditioning from a user's depth map: the 5th UNet input channel of ``512-depth-ema``.

The WebUI v1.10.1 makes it only in img2img, from its own MiDaS estimate (``depth2img_image_conditioning``):
MiDaS output -> bicubic resize (align_corners False) to the latent size -> ``2 (d - min) / (max - min) - 1``
over the tensor. A user's map goes through the same two steps, per map (the WebUI has one map per batch: its
MiDaS input is the first image repeated), so a map that equals MiDaS output conditions exactly as MiDaS does.

Maps (:func:`depth_array`): PIL images or arrays, 8-bit or 16-bit greyscale (L, I;16, I), float (F), RGB/RGBA
(Rec. 601 luma, PIL's "L" weights, in floating point: a grey map saved as colour gives its grey values). Values
keep their bit depth; offset and scale do not matter (the min/max normalisation removes them). Near = bright, as
MiDaS outputs (inverse depth); ``invert`` is for maps where near is dark: it negates the normalised map, which
equals normalising the inverted map (both steps are affine-equivariant).
"""
from __future__ import annotations

import dataclasses
from typing import Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from .batch import LATENT_FACTOR
from .errors import ConcatError

TITLE = "Depth"
LUMA = (0.299, 0.587, 0.114)


def depth_array(image, where: str = TITLE) -> np.ndarray:
    """[H, W] float64 depth values of ``image`` (PIL or numpy; see the module doc)."""
    if isinstance(image, Image.Image):
        if image.mode == "P":
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        if image.mode in ("LA", "PA"):
            image = image.getchannel(0)
        array = np.asarray(image)
    elif isinstance(image, np.ndarray):
        array = image
    else:
        raise ConcatError(f"{where}: the depth map must be an image, got {type(image).__name__}")
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 3:
        channels = array.shape[2]
        if channels in (2, 4):  # drop alpha
            array = array[..., :channels - 1]
        if array.shape[2] == 3:
            array = array @ np.array(LUMA)
        elif array.shape[2] == 1:
            array = array[..., 0]
    if array.ndim != 2 or min(array.shape) < 1:
        raise ConcatError(f"{where}: the depth map must be a greyscale or RGB image, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ConcatError(f"{where}: the depth map has NaN or infinite values")
    return array


def normalise(depth: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The WebUI's rule on one map [1, 1, H0, W0]: bicubic to (height, width), then to [-1, 1] by its min/max."""
    depth = torch.nn.functional.interpolate(depth, size=(height, width), mode="bicubic", align_corners=False)
    low, high = torch.aminmax(depth)
    return 2. * (depth - low) / (high - low) - 1.


@dataclasses.dataclass(frozen=True)
class DepthSpec:
    """One map for all images or one per image, and whether near is dark in them."""
    maps: Tuple[np.ndarray, ...]
    invert: bool = False

    @classmethod
    def from_images(cls, images: Sequence, invert: bool = False, where: str = TITLE) -> "DepthSpec":
        maps = tuple(depth_array(image, where) for image in images)
        if not maps:
            raise ConcatError(f"{where}: give a depth map (near = bright, as MiDaS makes them; 8- or 16-bit "
                              "greyscale or RGB), or use the WebUI's estimate in img2img")
        for i, m in enumerate(maps):
            if m.max() == m.min():
                which = f"depth map {i + 1}" if len(maps) > 1 else "the depth map"
                raise ConcatError(f"{where}: {which} is flat (every pixel {m.min():g}); give a map with near and "
                                  "far parts")
        return cls(maps, bool(invert))

    def latent(self, height: int, width: int) -> torch.Tensor:
        """[N, 1, height, width] float32 in [-1, 1] (N = number of maps)."""
        rows = []
        for m in self.maps:
            row = normalise(torch.from_numpy(m).to(torch.float32)[None, None], height, width)
            rows.append(-row if self.invert else row)
        return torch.cat(rows)

    def build(self, width: int, height: int) -> torch.Tensor:
        """For :class:`ConcatProvider`: the conditioning for an image of ``width`` x ``height`` pixels."""
        return self.latent(height // LATENT_FACTOR, width // LATENT_FACTOR)


def provider(spec: DepthSpec):
    """A :class:`ConcatProvider` of ``spec``: one row per image (one map repeated, or one map per image)."""
    from .batch import ConcatProvider, match_batch
    return ConcatProvider(spec.build, lambda concat, batch: match_batch(concat, batch, owner=TITLE, what="depth maps",
                                                                         one="depth map"))
