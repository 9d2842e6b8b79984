"""Ancestral-step noise: where it comes from and how much of it.

The core never imports k-diffusion. Noise follows the k-diffusion contract
``noise_sampler(sigma, sigma_next) -> Tensor shaped like x``; when a sampler gets ``noise_sampler=None``
it builds ``default_noise_sampler(x, randn_like)``, which draws ``randn_like(x)`` per call.
``randn_like`` defaults to ``torch.randn_like``; the WebUI adapter passes a function that resolves the
host's seeded path at call time (``lambda x: k_diffusion.sampling.torch.randn_like(x)``: the WebUI
replaces that module global with its per-image seeded RNG for every pass), so seeds reproduce.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
RandnLike = Callable[[torch.Tensor], torch.Tensor]


def default_noise_sampler(x: torch.Tensor, randn_like: Optional[RandnLike] = None) -> NoiseSampler:
    """``(sigma, sigma_next) -> randn_like(x)``; ``randn_like`` None means ``torch.randn_like``
    (looked up at call time, so a patched ``torch.randn_like`` is honoured too)."""
    if randn_like is None:
        return lambda sigma, sigma_next: torch.randn_like(x)
    return lambda sigma, sigma_next: randn_like(x)


def ancestral_step(sigma_from, sigma_to, eta: float = 1.0):
    """``(sigma_down, sigma_up)`` of an ancestral step (Karras et al. / k-diffusion convention):
    sigma_up = min(σ_to, η·sqrt(σ_to²(σ_from² − σ_to²)/σ_from²)), sigma_down = sqrt(σ_to² − sigma_up²).
    η = 0 gives ``(sigma_to, 0.)``."""
    if not eta:
        return sigma_to, 0.0
    sigma_up = min(sigma_to, eta * (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5)
    sigma_down = (sigma_to ** 2 - sigma_up ** 2) ** 0.5
    return sigma_down, sigma_up
