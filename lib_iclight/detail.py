"""Detail restore: move the input foreground's high frequencies onto the relit result.

    out = clip( G(result) + (original - G(original)), 0, 1 )

``G`` is ``cv2.GaussianBlur(img, (k, k), 0)`` with k = ``blur_radius`` (odd), written in torch: a
separable kernel, reflect-101 borders, and OpenCV's kernel for sigma 0: its fixed tables for k <= 9
(k = 5, the default: [1, 4, 6, 4, 1] / 16) and exp(-x^2 / 2 sigma^2) normalised, with
``sigma = 0.3 * ((k - 1) / 2 - 1) + 0.8``, for larger k. The low frequencies (lighting, colour) come from the result, the fine detail (text,
texture) from the original: the difference-of-Gaussians transfer used by sd-forge-ic-light.
``original`` is first aligned to the result with the same resize-and-centre-crop as the conditioning.
Computed in float32 on [0, 1] values; uint8 in, uint8 out (rounded).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .images import resize_and_center_crop, to_uint8_rgb


_OPENCV_SMALL = {1: [1], 3: [1, 2, 1], 5: [1, 4, 6, 4, 1], 7: [1, 3.5, 7, 9, 7, 3.5, 1],
                 9: [4, 13, 30, 51, 60, 51, 30, 13, 4]}


def gaussian_kernel(ksize: int) -> torch.Tensor:
    """OpenCV's 1-D Gaussian for an odd ``ksize`` and sigma 0 (``cv2.getGaussianKernel(k, 0)``, float64)."""
    if ksize < 1 or ksize % 2 == 0:
        raise ValueError(f"blur radius must be a positive odd number, got {ksize}")
    if ksize in _OPENCV_SMALL:
        k = torch.tensor(_OPENCV_SMALL[ksize], dtype=torch.float64)
        return k / k.sum()
    sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    x = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    k = torch.exp(-(x * x) / (2 * sigma * sigma))
    return k / k.sum()


def gaussian_blur(images: torch.Tensor, ksize: int) -> torch.Tensor:
    """Separable Gaussian blur of [B, C, H, W] with reflect-101 padding (``cv2.BORDER_DEFAULT``)."""
    if ksize == 1:
        return images.clone()
    k = gaussian_kernel(ksize).to(device=images.device, dtype=images.dtype)
    b, c, h, w = images.shape
    pad = ksize // 2
    x = images.reshape(b * c, 1, h, w)
    x = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode="reflect"), k.view(1, 1, 1, ksize))
    x = F.conv2d(F.pad(x, (0, 0, pad, pad), mode="reflect"), k.view(1, 1, ksize, 1))
    return x.reshape(b, c, h, w)


def restore_detail_tensor(result: torch.Tensor, original: torch.Tensor, blur_radius: int = 5) -> torch.Tensor:
    """[B, C, H, W] float in [0, 1], same shapes -> G(result) + original - G(original), clipped to [0, 1]."""
    return (gaussian_blur(result, blur_radius) + original - gaussian_blur(original, blur_radius)).clamp(0, 1)


def restore_detail(result, original, blur_radius: int = 5) -> np.ndarray:
    """uint8 [H, W, 3] (or PIL) images -> uint8 [H, W, 3] with ``original``'s detail on ``result``."""
    res = to_uint8_rgb(result)[..., :3]
    h, w = res.shape[:2]
    orig = to_uint8_rgb(original)[..., :3]
    if orig.shape[:2] != (h, w):
        orig = resize_and_center_crop(np.ascontiguousarray(orig), w, h)
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).float().div(255.0).permute(2, 0, 1)[None]  # noqa: E731
    out = restore_detail_tensor(to_t(res), to_t(orig), blur_radius)
    return (out[0].permute(1, 2, 0) * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
