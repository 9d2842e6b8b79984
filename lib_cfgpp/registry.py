"""The CFG++ sampler table: a pure description the WebUI adapter turns into ``SamplerData``.

Each entry: the label shown in the sampler list (never ending in a schedule-type label such as
" Karras" or " Uniform", which the WebUI strips from sampler names), the core function, aliases
(API / infotext names, incl. ComfyUI's), the WebUI sampler whose options (``scheduler``,
``second_order``, ``uses_ensd``, ...) the adapter copies, and that base's k-diffusion function name.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from . import samplers


@dataclasses.dataclass(frozen=True)
class SamplerDefinition:
    label: str
    function: Callable
    aliases: tuple
    base_label: str
    base_function: str
    ancestral: bool


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
)

SAMPLERS_BY_LABEL = {d.label: d for d in SAMPLERS}


def find(name: Optional[str]) -> Optional[SamplerDefinition]:
    """The definition whose label or alias equals ``name`` (case-insensitive), else None."""
    if not name:
        return None
    key = name.strip().lower()
    for definition in SAMPLERS:
        if key == definition.label.lower() or key in (a.lower() for a in definition.aliases):
            return definition
    return None
