"""One model evaluation as the samplers' loops see it, and the loop plumbing they share.

``predict(x, sigma) -> (D_λ, D_∅)`` for a 0-dim ``sigma``, both shaped like ``x``:

- ``guided(...)``: the host's CFG denoiser (armed for CFG++: it scales its guidance by ``multiplier`` and
  keeps its uncond rows); D_λ is its output, D_∅ its ``last_noise_uncond`` (see ``guidance.denoise``);
- ``plain(...)``: an ordinary denoiser D; returns ``(D, D)``, the *same* tensor twice, so a loop can tell
  (``guided is uncond``) that there is no guidance and skip the CFG++ terms: the same loop is then the
  base sampler, operation for operation.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch

from .guidance import UncondBlend, arm, denoise

Predict = Callable[[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]
Progress = Callable[[int, bool], object]


def guided(model, x: torch.Tensor, extra_args: Optional[dict], multiplier: float,
           uncond_blend: Optional[UncondBlend] = None) -> Predict:
    extra_args = {} if extra_args is None else extra_args
    arm(model, multiplier)
    s_in = x.new_ones([x.shape[0]])
    return lambda x_, sigma: denoise(model, x_, sigma * s_in, extra_args, uncond_blend)


def plain(model, x: torch.Tensor, extra_args: Optional[dict]) -> Predict:
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])

    def predict(x_, sigma):
        denoised = model(x_, sigma * s_in, **extra_args)
        return denoised, denoised
    return predict


def steps(n: int, disable, progress: Optional[Progress]):
    """The loop's iterable: ``range(n)``, or the host's progress bar ``progress(n, disable)``."""
    return range(n) if progress is None else progress(n, disable)


def report(callback, x, i, sigma, denoised):
    """The k-diffusion per-step callback dict (``sigma_hat`` = ``sigma``: no churn)."""
    if callback is not None:
        callback({'x': x, 'i': i, 'sigma': sigma, 'sigma_hat': sigma, 'denoised': denoised})
