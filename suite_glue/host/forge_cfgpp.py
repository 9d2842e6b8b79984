"""CFG++ on a Forge-family host: the guided D_λ and the unconditional D_∅ through a post-CFG function.

Why the A1111 route does nothing there: reForge's `CFGDenoiser.forward` (modules/sd_samplers_cfg_denoiser.py)
gets the already guided x0 from `ldm_patched.modules.samplers.sampling_function`; its `combine_denoised` only
copies it, so `cond_scale_miltiplier` has no effect, and `last_noise_uncond` holds the guided prediction (Forge
2.x stores the uncond *eps* there; Forge Classic has neither). A CFG++ sampler on the A1111 contract therefore
degenerates to its base sampler.

The route Forge offers (and reForge's own CFG++ samplers take, ldm_patched/k_diffusion/sampling.py
`sample_euler_cfg_pp`): `cfg_function` calls every `model_options["sampler_post_cfg_function"]` after the CFG
combine with `args["denoised"]` (D = D_∅ + s·(D_c − D_∅), s the host's CFG scale), `args["uncond_denoised"]`
(D_∅) and `args["uncond"]` (None when the host skipped the uncond pass), and returns what the function returns;
`model_options["disable_cfg1_optimization"]` keeps the uncond pass at scale 1 (`sampling_function`).
`ModelPatcher.set_model_sampler_post_cfg_function` sets both (ldm_patched/modules/model_patcher.py).

`CfgppDenoiser` stands for the host's CFG denoiser inside one CFG++ sampler run: for each call it gives the
model options the host reads at every call — `denoiser.inner_model.inner_model.forge_objects.unet.model_options`
(reForge `CFGDenoiser.forward`, Forge Classic `forge_sampler.forge_sample`, Forge 2.x `sampling_function`) — a
copy with our post-CFG function appended, and puts the host's own dict back after the call (the host's dict and
lists are never mutated). Our function returns D_∅ + m·(D − D_∅), m = `cond_scale_miltiplier` (the CFG++
convention: 1/12.5 or 1; m = 1 returns D itself), which equals A1111's D_∅ + s·m·(D_c − D_∅); guidance that
post-CFG functions before ours added (e.g. RescaleCFG) is scaled with it. With `need_last_noise_uncond` it keeps
D_∅ in `last_noise_uncond`; when the host skipped the uncond pass (reForge: `uncond` None) D_∅ is D, as the A1111
denoiser puts the cond output there. Every other attribute (mask, nmask, init_latent, p, sampler...) is the host
denoiser's.

Refused before the first model call (`check`): an edit model with an image CFG scale (reForge's edit combine is
not a CFG we can rescale), and the settings that make Forge Classic / Forge 2.x force the CFG scale to 1 instead
of skipping the uncond pass (Negative Guidance minimum sigma, Ignore negative prompt during early sampling):
our function would then mistake an unguided step for a guided one.
"""
from __future__ import annotations

from .base import CFGPP, HostRefusal

SKIP_SETTINGS = (("s_min_uncond", "Negative Guidance minimum sigma"),
                 ("skip_early_cond", "Ignore negative prompt during early sampling"))


def with_post_cfg(model_options: dict, function) -> dict:
    """A new options dict: `model_options` plus `function` last among the post-CFG functions and the CFG-1
    optimisation off (what ModelPatcher.set_model_sampler_post_cfg_function sets)."""
    return {**model_options,
            "sampler_post_cfg_function": list(model_options.get("sampler_post_cfg_function", [])) + [function],
            "disable_cfg1_optimization": True}


def unet_patcher(denoiser):
    """The patcher whose `model_options` the host's CFG denoiser reads, or None."""
    try:
        patcher = denoiser.inner_model.inner_model.forge_objects.unet
    except AttributeError:
        return None
    return patcher if isinstance(getattr(patcher, "model_options", None), dict) else None


class CfgppDenoiser:
    def __init__(self, denoiser, host_name: str):
        self._denoiser = denoiser
        self._host_name = host_name
        self.cond_scale_miltiplier = 1.0
        self.need_last_noise_uncond = False
        self.last_noise_uncond = None

    def __getattr__(self, name):
        return getattr(self._denoiser, name)

    def check(self, extra_args) -> None:
        """Raise HostRefusal (naming the host and the fix) for what this route cannot run."""
        from modules import shared
        where = f"{CFGPP} samplers on {self._host_name}"
        if unet_patcher(self._denoiser) is None:
            raise HostRefusal(f"{where}: this WebUI's CFG denoiser has no model patcher to give the unconditional "
                              "prediction; use the WebUI's own CFG++ samplers (e.g. 'Euler CFG++').")
        model = getattr(shared, "sd_model", None)
        image_cfg = getattr(self._denoiser, "image_cfg_scale", None)
        if getattr(model, "cond_stage_key", None) == "edit" and image_cfg not in (None, 1.0):
            raise HostRefusal(f"{where}: an edit (InstructPix2Pix) model with Image CFG scale {image_cfg} is not "
                              "supported; set the Image CFG scale to 1, or use a sampler without CFG++.")
        values = {key: float(getattr(shared.opts, key, 0) or 0) for key, _ in SKIP_SETTINGS}
        values["s_min_uncond"] = max(values["s_min_uncond"], float((extra_args or {}).get("s_min_uncond", 0) or 0))
        on = [f"'{label}' ({values[key]:g})" for key, label in SKIP_SETTINGS if values[key] > 0]
        if on:
            raise HostRefusal(f"{where}: {' and '.join(on)} make this WebUI run some steps without guidance in a "
                              "way a CFG++ sampler cannot tell; set them to 0 in Settings > Sampler parameters "
                              "(or Optimizations), or use the WebUI's own CFG++ samplers.")

    def __call__(self, x, sigma, **kwargs):
        seen = {}
        multiplier = float(self.cond_scale_miltiplier)

        def post_cfg(args):
            denoised = args["denoised"]
            uncond = args.get("uncond_denoised") if args.get("uncond", True) is not None else None
            seen["uncond"] = denoised if uncond is None else uncond
            if uncond is None or multiplier == 1.0:
                return denoised
            return uncond + multiplier * (denoised - uncond)

        patcher = unet_patcher(self._denoiser)
        own = patcher.model_options
        patcher.model_options = with_post_cfg(own, post_cfg)
        try:
            guided = self._denoiser(x, sigma, **kwargs)
        finally:
            patcher.model_options = own
        if "uncond" not in seen:
            raise RuntimeError(f"{CFGPP} sampler: {self._host_name} did not call the post-CFG function of its "
                               "model options; use the WebUI's own CFG++ samplers.")
        if self.need_last_noise_uncond:
            self.last_noise_uncond = seen["uncond"].to(guided)
        return guided
