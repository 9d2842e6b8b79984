"""Per-image concat mapping: one conditioning row per image of the batch, rebuilt for every latent size.

A concat-conditioned feature describes its conditioning once (e.g. "these foregrounds", "this input image") and
lets :class:`ConcatProvider` produce it for whatever latent ``x`` the sampler is about to denoise: size from
``x`` (H = 8 h, W = 8 w), rows matched to ``x.shape[0]`` (:func:`match_batch`), device and dtype of ``x``. The
first pass and the hires pass each build once (``builds`` counts them).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from .errors import ConcatError

LATENT_FACTOR = 8  # pixels per latent pixel of the SD / SDXL VAEs


def match_batch(concat: torch.Tensor, batch: int, *, owner: str = "The concat conditioning", what: str = "inputs",
                one: str = "input", error: type = ConcatError) -> torch.Tensor:
    """Rows per image for a batch of ``batch`` images: one row is repeated, N rows must equal ``batch``.
    Otherwise raises ``error`` naming the feature (``owner``), what was given (``what``, singular ``one``)."""
    if concat.shape[0] == batch:
        return concat
    if concat.shape[0] == 1:
        return concat.expand(batch, *concat.shape[1:]).contiguous()
    raise error(f"{owner} got {concat.shape[0]} {what} for a batch of {batch} images; "
                f"give one {one}, or one per image.")


class ConcatProvider:
    """The concat latent for any latent ``x``: ``build(width, height)`` gives [N, C, height/8, width/8] (N = 1 or
    one row per image); it is called once per size and cached. ``matcher(concat, batch)`` maps rows to the batch
    (default :func:`match_batch`).

    In the WebUI, ``provider.for_latent`` is what ``p.txt2img_image_conditioning(x)`` /
    ``p.img2img_image_conditioning(image, x)`` return while the feature is armed."""

    def __init__(self, build: Callable[[int, int], torch.Tensor],
                 matcher: Optional[Callable[[torch.Tensor, int], torch.Tensor]] = None):
        self.build = build
        self.matcher = matcher or match_batch
        self.builds = 0
        self._cache = {}

    def latent(self, width: int, height: int) -> torch.Tensor:
        key = (width, height)
        if key not in self._cache:
            self._cache[key] = self.build(width, height)
            self.builds += 1
        return self._cache[key]

    def for_latent(self, x: torch.Tensor, *_args, **_kwargs) -> torch.Tensor:
        concat = self.latent(x.shape[-1] * LATENT_FACTOR, x.shape[-2] * LATENT_FACTOR)
        return self.matcher(concat, x.shape[0]).to(device=x.device, dtype=x.dtype)
