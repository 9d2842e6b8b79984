"""State-dict key prefixes of ldm / sgm checkpoints (the UNet lives under ``model.diffusion_model.``)."""
from __future__ import annotations

LDM_PREFIXES = ("model.diffusion_model.", "diffusion_model.")


def strip_ldm_prefix(key: str) -> str:
    """``key`` without a leading ``model.diffusion_model.`` / ``diffusion_model.``."""
    for prefix in LDM_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key
