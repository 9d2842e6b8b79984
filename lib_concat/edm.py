"""Continuous EDM v-prediction (CosXL, CosXL Edit) as a k-diffusion denoiser.

The network predicts v on the EDM noise levels σ ∈ [σ_min, σ_max] with data scale σ_d (CosXL: 0.002, 120 and 1,
stored in the checkpoint as ``edm_vpred.sigma_min`` / ``edm_vpred.sigma_max``). Karras et al. (2022, "EDM"),
table 1, with the v-target's sign (v = −F):

    c_skip = σ_d² / (σ² + σ_d²)      c_out = −σ·σ_d / √(σ² + σ_d²)      c_in = 1 / √(σ² + σ_d²)
    c_noise = ¼·ln σ                 D(x; σ) = c_skip·x + c_out·F_θ(c_in·x; c_noise)

(k-diffusion's ``layers.Denoiser`` has the same c_skip / c_in and c_out with the opposite sign, because it trains
on the F-target; diffusers' ``EDMEulerScheduler(prediction_type="v_prediction")`` has exactly these.)

:class:`EDMVDenoiser` has the interface the WebUI's samplers and schedulers use of k-diffusion's
``DiscreteSchedule`` denoisers, so samplers, schedulers, seeds and the CFG denoiser work unchanged:
- ``forward(x, sigma, **kwargs)`` calls ``inner_model.apply_model(c_in·x, c_noise, **kwargs)`` (``cond=...``);
- ``sigmas``: an ascending table of 1000 noise levels, log-spaced from σ_min to σ_max (as ComfyUI's
  ``ModelSamplingContinuousEDM``), so ``sigmas[0]`` / ``sigmas[-1]`` are the model's range and table-based
  schedulers (Simple, DDIM, the refiner switch) have a table to read;
- ``sigma_to_t`` / ``t_to_sigma``: t = c_noise = ¼·ln σ, the network's own time input (the Normal and SGM Uniform
  schedulers are then log-linear in σ);
- ``get_sigmas(n)`` (the "Automatic"/"Uniform" schedule): Karras ρ = 7 from σ_max to σ_min, then 0 — the EDM
  default and diffusers' ``EDMEulerScheduler`` default.
"""
from __future__ import annotations

import math

import torch
from torch import nn

COSXL_SIGMA_MIN = 0.002
COSXL_SIGMA_MAX = 120.0
COSXL_SIGMA_DATA = 1.0
TABLE_SIZE = 1000


def _append_dims(x: torch.Tensor, ndim: int) -> torch.Tensor:
    return x[(...,) + (None,) * (ndim - x.ndim)]


def edm_v_scalings(sigma: torch.Tensor, sigma_data: float = COSXL_SIGMA_DATA):
    """(c_skip, c_out, c_in, c_noise) of EDM v-prediction at noise level ``sigma`` (any shape, elementwise)."""
    total = sigma ** 2 + sigma_data ** 2
    c_skip = sigma_data ** 2 / total
    c_out = -sigma * sigma_data / total ** 0.5
    c_in = 1 / total ** 0.5
    c_noise = 0.25 * sigma.log()
    return c_skip, c_out, c_in, c_noise


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, device="cpu") -> torch.Tensor:
    """Karras et al. (2022) schedule of ``n`` levels from σ_max down to σ_min, then 0 (n + 1 values)."""
    ramp = torch.linspace(0, 1, n, device=device)
    min_inv, max_inv = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (max_inv + ramp * (min_inv - max_inv)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


class EDMVDenoiser(nn.Module):
    """D(x; σ) of an EDM v-prediction network wrapped by ``model`` (anything with ``apply_model(x, t, cond)``).
    See the module doc for the interface; σ values are those of the checkpoint (or the CosXL model card)."""

    def __init__(self, model, sigma_min: float = COSXL_SIGMA_MIN, sigma_max: float = COSXL_SIGMA_MAX,
                 sigma_data: float = COSXL_SIGMA_DATA, rho: float = 7.0):
        super().__init__()
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"EDM noise levels must satisfy 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.inner_model = model
        self.sigma_data = float(sigma_data)
        self.rho = float(rho)
        self.quantize = False  # k-diffusion's DiscreteSchedule attribute; a continuous schedule never quantizes
        table = torch.linspace(math.log(sigma_min), math.log(sigma_max), TABLE_SIZE, dtype=torch.float64).exp()
        table[0], table[-1] = sigma_min, sigma_max  # exact ends: they are the model's range
        self.register_buffer("sigmas", table.float())
        self.register_buffer("log_sigmas", table.log().float())
        self._range = (float(sigma_min), float(sigma_max))

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def get_scalings(self, sigma: torch.Tensor):
        """(c_skip, c_out, c_in) at ``sigma``."""
        return edm_v_scalings(sigma, self.sigma_data)[:3]

    def sigma_to_t(self, sigma: torch.Tensor, quantize=None) -> torch.Tensor:
        return 0.25 * torch.as_tensor(sigma).log()

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        return (torch.as_tensor(t, dtype=torch.float32) * 4).exp()

    def get_sigmas(self, n=None) -> torch.Tensor:
        if n is None:
            return torch.cat([self.sigmas.flip(0), self.sigmas.new_zeros(1)])
        return karras_sigmas(n, *self._range, rho=self.rho, device=self.sigmas.device)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs) -> torch.Tensor:
        c_skip, c_out, c_in, c_noise = (_append_dims(c, x.ndim) if i < 3 else c
                                        for i, c in enumerate(edm_v_scalings(sigma, self.sigma_data)))
        v = self.inner_model.apply_model(x * c_in, c_noise, **kwargs)
        return x * c_skip + v * c_out
