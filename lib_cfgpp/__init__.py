"""CFG++ samplers (arXiv 2406.08070) for the k-diffusion sampler interface; pure PyTorch.

Public API: the sampler functions (``samplers``: Euler, Euler a, DPM++ 2M, DPM++ 2S a; ``sde``: DPM++ SDE,
2M SDE, 3M SDE; ``second_order``: Heun, DPM2; ``res_multistep`` and ``gradient_estimation``: those bases and
their twins; the family rule is in ``samplers``), ``registry.SAMPLERS`` / ``BASE_SAMPLERS`` (labels, aliases,
bases, options), ``factory.make_sampler`` / ``make_samplers`` (bind convention and host hooks), ``guidance``
(conventions, λ), ``noise`` and ``brownian`` (noise-sampler contracts).
"""
from .brownian import BrownianTreeNoise
from .factory import make_sampler, make_samplers
from .gradient_estimation import sample_gradient_estimation, sample_gradient_estimation_cfg_pp
from .guidance import (CONVENTIONS, DDIM_CONVENTION, DEFAULT_CONVENTION, LAMBDA_CONVENTION, cfg_scale_for_lambda,
                       guidance_lambda, host_mask_blend, multiplier_for, normalize_convention)
from .noise import default_noise_sampler
from .registry import BASE_SAMPLERS, SAMPLERS, BaseSamplerDefinition, SamplerDefinition, base_function, find
from .res_multistep import (sample_res_multistep, sample_res_multistep_ancestral,
                            sample_res_multistep_ancestral_cfg_pp, sample_res_multistep_cfg_pp)
from .samplers import (sample_dpmpp_2m_cfg_pp, sample_dpmpp_2s_ancestral_cfg_pp, sample_euler_ancestral_cfg_pp,
                       sample_euler_cfg_pp)
from .sde import sample_dpmpp_2m_sde_cfg_pp, sample_dpmpp_3m_sde_cfg_pp, sample_dpmpp_sde_cfg_pp
from .second_order import sample_dpm_2_cfg_pp, sample_heun_cfg_pp

__all__ = [
    "make_sampler", "make_samplers", "CONVENTIONS", "DDIM_CONVENTION", "DEFAULT_CONVENTION", "LAMBDA_CONVENTION",
    "cfg_scale_for_lambda", "guidance_lambda", "host_mask_blend", "multiplier_for", "normalize_convention",
    "default_noise_sampler", "BrownianTreeNoise", "SAMPLERS", "BASE_SAMPLERS", "SamplerDefinition",
    "BaseSamplerDefinition", "base_function", "find",
    "sample_euler_cfg_pp", "sample_euler_ancestral_cfg_pp", "sample_dpmpp_2m_cfg_pp",
    "sample_dpmpp_2s_ancestral_cfg_pp",
    "sample_dpmpp_sde_cfg_pp", "sample_dpmpp_2m_sde_cfg_pp", "sample_dpmpp_3m_sde_cfg_pp", "sample_heun_cfg_pp",
    "sample_dpm_2_cfg_pp", "sample_res_multistep", "sample_res_multistep_ancestral", "sample_res_multistep_cfg_pp",
    "sample_res_multistep_ancestral_cfg_pp", "sample_gradient_estimation", "sample_gradient_estimation_cfg_pp",
]
