"""Fit a concat conditioning to the latent that actually reaches the UNet (rows and spatial size).

WebUI v1.10.1 builds the image conditioning once per sampling pass and may then hand the UNet a smaller latent:
- rows: the CFG denoiser drops the uncond rows of ``x`` when it skips them (Negative Guidance minimum sigma, skip
  early CFG) but passes ``image_cond`` with all its rows. The cond rows come first, so keeping the first rows of
  the concat lines them up again.
- size: the hires pass with "Resize width/height to" another aspect ratio builds the conditioning at the upscaled
  size, then crops the latent (``sample_hr_pass``: ``truncate_x // 2`` columns on the left, the rest on the right;
  same for rows). The same centre crop of the concat keeps every concat pixel over the latent pixel it was made for.
"""
from __future__ import annotations

import torch


def fit(concat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``concat`` [N, C, H, W] cut to x's rows (the first ones) and x's spatial size (the WebUI's centre crop).
    Returns ``concat`` itself when nothing needs cutting."""
    rows, (height, width) = x.shape[0], x.shape[-2:]
    if concat.shape[0] > rows:
        concat = concat[:rows]
    top, left = (concat.shape[-2] - height) // 2, (concat.shape[-1] - width) // 2
    if top > 0 or left > 0:
        top, left = max(top, 0), max(left, 0)
        concat = concat[..., top:top + height, left:left + width]
    return concat
