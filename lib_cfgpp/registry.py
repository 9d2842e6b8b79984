"""The sampler tables: pure descriptions the WebUI adapter turns into ``SamplerData``.

``SAMPLERS``: the CFG++ samplers. Each: the label shown in the sampler list (never ending in a schedule-type
label such as " Karras" or " Uniform", which the WebUI strips from sampler names), the core function,
aliases (API / infotext names, incl. ComfyUI's), the WebUI sampler whose options (``scheduler``,
``second_order``, ``brownian_noise``, ``uses_ensd``, ...) the adapter copies, that base's function name (a
k-diffusion function, or one of ``BASE_SAMPLERS``), its noise (``ancestral``: ``randn_like`` draws;
``brownian``: a Brownian-tree ``noise_sampler``) and its settings-driven extra parameters (None: those of
the k-diffusion base function).

``BASE_SAMPLERS``: plain samplers the WebUI lacks, added so that their CFG++ twins have a base (RES
multistep and its ancestral form, gradient estimation; labels as reForge's, aliases as ComfyUI's). Their
``options`` are the WebUI's sampler options; ``extra_params`` the settings they take.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Union

from . import gradient_estimation, res_multistep, samplers, sde, second_order


@dataclasses.dataclass(frozen=True)
class SamplerDefinition:
    label: str
    function: Callable
    aliases: tuple
    base_label: str
    base_function: str
    ancestral: bool
    brownian: bool = False
    extra_params: Optional[tuple] = None


@dataclasses.dataclass(frozen=True)
class BaseSamplerDefinition:
    label: str
    function: Callable
    aliases: tuple
    options: dict
    extra_params: tuple = ()
    ancestral: bool = False


BASE_SAMPLERS = (
    BaseSamplerDefinition("RES Multistep", res_multistep.sample_res_multistep,
                          ("k_res_multistep", "res_multistep"), {"scheduler": "karras"}),
    BaseSamplerDefinition("RES Multistep Ancestral", res_multistep.sample_res_multistep_ancestral,
                          ("k_res_multistep_a", "k_res_multistep_ancestral", "res_multistep_ancestral"),
                          {"scheduler": "karras", "uses_ensd": True}, ("s_noise",), ancestral=True),
    BaseSamplerDefinition("Gradient Estimation", gradient_estimation.sample_gradient_estimation,
                          ("k_gradient_estimation", "gradient_estimation"), {}),
)

SAMPLERS = (
    SamplerDefinition("Euler CFG++", samplers.sample_euler_cfg_pp,
                      ("k_euler_cfg_pp", "euler_cfg_pp"), "Euler", "sample_euler", False),
    SamplerDefinition("Euler a CFG++", samplers.sample_euler_ancestral_cfg_pp,
                      ("k_euler_a_cfg_pp", "k_euler_ancestral_cfg_pp", "euler_ancestral_cfg_pp"),
                      "Euler a", "sample_euler_ancestral", True),
    SamplerDefinition("DPM++ 2M CFG++", samplers.sample_dpmpp_2m_cfg_pp,
                      ("k_dpmpp_2m_cfg_pp", "dpmpp_2m_cfg_pp"), "DPM++ 2M", "sample_dpmpp_2m", False),
    SamplerDefinition("DPM++ 2S a CFG++", samplers.sample_dpmpp_2s_ancestral_cfg_pp,
                      ("k_dpmpp_2s_a_cfg_pp", "dpmpp_2s_ancestral_cfg_pp"),
                      "DPM++ 2S a", "sample_dpmpp_2s_ancestral", True),
    SamplerDefinition("DPM++ SDE CFG++", sde.sample_dpmpp_sde_cfg_pp,
                      ("k_dpmpp_sde_cfg_pp", "dpmpp_sde_cfg_pp"), "DPM++ SDE", "sample_dpmpp_sde", False,
                      brownian=True),
    SamplerDefinition("DPM++ 2M SDE CFG++", sde.sample_dpmpp_2m_sde_cfg_pp,
                      ("k_dpmpp_2m_sde_cfg_pp", "dpmpp_2m_sde_cfg_pp"), "DPM++ 2M SDE", "sample_dpmpp_2m_sde",
                      False, brownian=True),
    SamplerDefinition("DPM++ 3M SDE CFG++", sde.sample_dpmpp_3m_sde_cfg_pp,
                      ("k_dpmpp_3m_sde_cfg_pp", "dpmpp_3m_sde_cfg_pp"), "DPM++ 3M SDE", "sample_dpmpp_3m_sde",
                      False, brownian=True),
    SamplerDefinition("Heun CFG++", second_order.sample_heun_cfg_pp,
                      ("k_heun_cfg_pp", "heun_cfg_pp"), "Heun", "sample_heun", False),
    SamplerDefinition("DPM2 CFG++", second_order.sample_dpm_2_cfg_pp,
                      ("k_dpm_2_cfg_pp", "dpm_2_cfg_pp"), "DPM2", "sample_dpm_2", False),
    SamplerDefinition("RES Multistep CFG++", res_multistep.sample_res_multistep_cfg_pp,
                      ("k_res_multistep_cfg_pp", "res_multistep_cfg_pp"), "RES Multistep", "sample_res_multistep",
                      False, extra_params=()),
    SamplerDefinition("RES Multistep Ancestral CFG++", res_multistep.sample_res_multistep_ancestral_cfg_pp,
                      ("k_res_multistep_a_cfg_pp", "k_res_multistep_ancestral_cfg_pp",
                       "res_multistep_ancestral_cfg_pp"),
                      "RES Multistep Ancestral", "sample_res_multistep_ancestral", True, extra_params=("s_noise",)),
    SamplerDefinition("Gradient Estimation CFG++", gradient_estimation.sample_gradient_estimation_cfg_pp,
                      ("k_gradient_estimation_cfg_pp", "gradient_estimation_cfg_pp"), "Gradient Estimation",
                      "sample_gradient_estimation", False, extra_params=()),
)

SAMPLERS_BY_LABEL = {d.label: d for d in SAMPLERS}
BASE_BY_FUNCTION = {d.function.__name__: d for d in BASE_SAMPLERS}

Definition = Union[SamplerDefinition, BaseSamplerDefinition]


def find(name: Optional[str]) -> Optional[Definition]:
    """The CFG++ or base definition whose label or alias equals ``name`` (case-insensitive), else None."""
    if not name:
        return None
    key = name.strip().lower()
    for definition in (*SAMPLERS, *BASE_SAMPLERS):
        if key == definition.label.lower() or key in (a.lower() for a in definition.aliases):
            return definition
    return None


def base_function(definition: SamplerDefinition, k_sampling=None) -> Callable:
    """The base sampler's function: ours for a base of ``BASE_SAMPLERS``, else ``k_sampling.<base_function>``
    (the caller's ``k_diffusion.sampling``; the core never imports k-diffusion)."""
    ours = BASE_BY_FUNCTION.get(definition.base_function)
    if ours is not None:
        return ours.function
    if k_sampling is None:
        raise ValueError(f"{definition.label}: the base {definition.base_function} is k-diffusion's; pass k_sampling")
    return getattr(k_sampling, definition.base_function)
