"""The seam between the suite's scripts and the WebUI that runs them (DESIGN.md, "Hosts").

The scripts never patch or query the host's sampling machinery directly; they ask the `Host` of the running WebUI
(`suite_glue.host.current()`), which has one implementation per host family:

- `a1111.A1111Host`: AUTOMATIC1111 WebUI v1.10.x, the suite's target: what the scripts did before the seam.
- `forge.ForgeHost`: the Forge family (reForge, Forge Classic, Forge 1.x; Forge 2.x / Neo) where parts of the
  A1111 way do nothing (see that module): the parts with a certain Forge route run through it, the others refuse.

What a host answers (each method documents its contract):
- `check(feature, p, parts)`: refuse, before sampling, a feature (or a part of it) this host has no backend for;
  the message names the host and what to use instead (`HostRefusal`, a ValueError the scripts turn into a
  stopped generation with `suite_glue.failure.fail_generation`). Never a silent no-op.
- `apply_unet_patches(p, unet, config, state)` / `remove_unet_patches(unet)`: HiDiffusion's patch set for one
  sampling pass, and its exact removal.
- `supply_concat(p, for_latent)`: the per-pass concat conditioning of a concat-conditioned UNet (IC-Light).
- `guided_sampler(function)`: a CFG++ sampler function whose model gives, per call, the guided prediction D_λ
  (return value, guidance scaled by `cond_scale_miltiplier`) and the unconditional D_∅ (`last_noise_uncond` when
  `need_last_noise_uncond`): the A1111 CFG denoiser contract that lib_cfgpp reads.
- `register_samplers(entries)`: add samplers to the host's list without replacing one of the host's own.
- `pass_steps(sampler, p, img2img, steps)`: the schedule a pass walks, to locate a CFG-denoiser call's step.
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional

from .detect import HostFamily

CFGPP = "CFG++"
DEPTH = "Depth"
EDIT = "Edit model"
HIDIFFUSION = "HiDiffusion"
ICLIGHT = "IC-Light"


class HostRefusal(ValueError):
    """A feature this host cannot run as asked; the message says which host and what to do instead."""


class Host:
    family: HostFamily

    def __init__(self, family: HostFamily):
        self.family = family

    @property
    def name(self) -> str:
        return self.family.name

    @property
    def is_forge(self) -> bool:
        return self.family.kind != "a1111"

    def check(self, feature: str, p=None, parts: Iterable[str] = ()) -> None:
        """Raise HostRefusal if `feature` (with `parts`, e.g. HiDiffusion's "rau_net", "msw_msa") cannot run here
        for this generation `p`. Call it where the feature validates its arguments, before sampling."""
        raise NotImplementedError

    def apply_unet_patches(self, p, unet, config, state) -> None:
        """Install HiDiffusion's patch set (lib_hidiffusion config + state) for the pass about to sample."""
        raise NotImplementedError

    def remove_unet_patches(self, unet) -> None:
        """Undo `apply_unet_patches` exactly (idempotent; also heals patches a failed generation left)."""
        raise NotImplementedError

    def supply_concat(self, p, for_latent: Callable) -> None:
        """Make every sampling pass of `p` (hires included) get `for_latent(latent)` as its concat conditioning."""
        raise NotImplementedError

    def guided_sampler(self, function: Callable) -> Callable:
        """`function` (k-diffusion signature) as registered here; see the module docstring."""
        raise NotImplementedError

    def register_samplers(self, entries: Iterable) -> list:
        """Register `suite_glue.samplers` entries; returns the SamplerData registered."""
        raise NotImplementedError

    def registered_label(self, label: Optional[str]) -> Optional[str]:
        """The label our sampler `label` got here (a host sampler of the same name keeps that name)."""
        return label

    def pass_steps(self, sampler, p, img2img: bool, steps: Optional[int]):
        """`suite_glue.steps.PassSteps` of this pass, or None when the sampler has no fixed schedule."""
        from .. import steps as glue_steps
        return glue_steps.pass_steps(sampler, p, img2img, steps)
