"""CFG++ samplers (arXiv 2406.08070) for the k-diffusion sampler interface; pure PyTorch.

Public API: ``samplers`` (the four sampler functions), ``registry.SAMPLERS`` (labels, aliases, base
samplers), ``factory.make_sampler`` / ``make_samplers`` (bind convention and host hooks),
``guidance`` (conventions, λ), ``noise`` (noise-sampler contract).
"""
from .factory import make_sampler, make_samplers
from .guidance import (CONVENTIONS, DDIM_CONVENTION, DEFAULT_CONVENTION, LAMBDA_CONVENTION, cfg_scale_for_lambda,
                       guidance_lambda, host_mask_blend, multiplier_for, normalize_convention)
from .noise import default_noise_sampler
from .registry import SAMPLERS, SamplerDefinition, find
from .samplers import (sample_dpmpp_2m_cfg_pp, sample_dpmpp_2s_ancestral_cfg_pp, sample_euler_ancestral_cfg_pp,
                       sample_euler_cfg_pp)

__all__ = [
    "make_sampler", "make_samplers", "CONVENTIONS", "DDIM_CONVENTION", "DEFAULT_CONVENTION", "LAMBDA_CONVENTION",
    "cfg_scale_for_lambda", "guidance_lambda", "host_mask_blend", "multiplier_for", "normalize_convention",
    "default_noise_sampler", "SAMPLERS", "SamplerDefinition", "find", "sample_euler_cfg_pp",
    "sample_euler_ancestral_cfg_pp", "sample_dpmpp_2m_cfg_pp", "sample_dpmpp_2s_ancestral_cfg_pp",
]
