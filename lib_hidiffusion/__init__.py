"""HiDiffusion (RAU-Net + MSW-MSA, arXiv 2311.17528) for the WebUI's ldm/sgm UNets, in pure PyTorch.

Use: ``config = make_config(unet, (h // 8, w // 8), family)``; ``state = HiDiffusionState()``;
``apply(unet, config, state)``; ``state.arm(seed)``; per denoiser call ``state.set_step(i, n)``;
finally ``state.disarm()`` and ``remove(unet)``.
"""
from .patcher import apply, is_patched, remove
from .presets import (FAMILIES, HiDiffusionConfig, layout_of, make_config, official_preset,
                      resolve_family)
from .schedule import INACTIVE, Phase, StepLocator, rau_active, ratio_for_steps
from .state import HiDiffusionState

__all__ = ["apply", "remove", "is_patched", "make_config", "HiDiffusionConfig", "HiDiffusionState",
           "rau_active", "ratio_for_steps", "Phase", "INACTIVE", "StepLocator", "layout_of", "resolve_family",
           "official_preset", "FAMILIES"]
