"""Brownian-tree noise for the SDE samplers when neither the host nor the caller gives a noise sampler.

Contract (k-diffusion's ``BrownianTreeNoiseSampler``, which the WebUI builds from the image seeds for its
``brownian_noise`` samplers): ``noise(σ, σ') = (W(σ') − W(σ)) / √|σ' − σ|``, W a Brownian motion indexed by σ
itself on [σ_min, σ_max]; a list of seeds gives one independent tree per image (row ``b`` of the result
comes from ``seed[b]``), one seed or None (a seed drawn with ``torch.randint``) one tree for the whole
tensor. Queries are deterministic: the same (σ, σ') gives the same noise whatever was asked before, so
two samplers asking different intervals of the same tree see one consistent Brownian path.
The WebUI adapter binds the host's own class instead (``brownian_noise=`` of the SDE samplers).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch

BrownianFactory = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Callable]


class BrownianTreeNoise:
    """``(σ, σ') -> Tensor`` shaped like ``x``; see the module docstring."""

    def __init__(self, x: torch.Tensor, sigma_min, sigma_max, seed: Union[int, Sequence[int], None] = None):
        import torchsde  # a k-diffusion dependency, present wherever the WebUI runs

        low, high = torch.as_tensor(sigma_min), torch.as_tensor(sigma_max)
        self.sign = 1 if low < high else -1
        low, high = (low, high) if low < high else (high, low)
        self.per_image = isinstance(seed, (list, tuple))
        if seed is None:
            seeds = [torch.randint(0, 2 ** 63 - 1, []).item()]
        else:
            seeds = list(seed) if self.per_image else [seed]
        if self.per_image and len(seeds) != x.shape[0]:
            raise ValueError(f"{len(seeds)} seeds for a batch of {x.shape[0]}")
        start = torch.zeros_like(x[0] if self.per_image else x)
        self.trees = [torchsde.BrownianTree(low, start, high, entropy=s) for s in seeds]

    def __call__(self, sigma, sigma_next) -> torch.Tensor:
        a, b = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        low, high, sign = (a, b, 1) if a < b else (b, a, -1)
        w = torch.stack([tree(low, high) for tree in self.trees]) * (self.sign * sign)
        w = w if self.per_image else w[0]
        return w / (b - a).abs().sqrt()


def brownian_or_given(x: torch.Tensor, sigmas: torch.Tensor, noise_sampler, factory: Optional[BrownianFactory]):
    """``noise_sampler`` if given, else ``factory(x, σ_min, σ_max)`` (default ``BrownianTreeNoise``) over the
    positive sigmas of ``sigmas``, as k-diffusion's SDE samplers build theirs."""
    if noise_sampler is not None:
        return noise_sampler
    sigma_min, sigma_max = sigmas[sigmas > 0].min(), sigmas.max()
    return (BrownianTreeNoise if factory is None else factory)(x, sigma_min, sigma_max)
