"""CFG++ samplers in the WebUI's sampler list (UI, API `sampler_name`, X/Y/Z, hires sampler, infotext), and the
base samplers of some of them that the WebUI lacks (RES Multistep, RES Multistep Ancestral, Gradient Estimation).

Adapter only: the update rules live in lib_cfgpp. Registration happens when the WebUI loads this script.
Infotext gets "CFGpp lambda" (the λ actually applied) and "CFGpp convention"; pasting such an infotext under
another convention setting rewrites the pasted CFG scale so λ is the same.
"""
import functools

import k_diffusion.sampling
from tqdm.auto import trange

from modules import script_callbacks, scripts, shared

from hdsuite_imports import suite_import

cfgpp = suite_import("lib_cfgpp")
glue_samplers = suite_import("suite_glue.samplers")
glue_infotext = suite_import("suite_glue.infotext")
glue_host = suite_import("suite_glue.host")  # the WebUI family: how a sampler gets D_∅, how samplers register

SETTING = "cfgpp_guidance_convention"
INFOTEXT_LAMBDA = "CFGpp lambda"  # infotext keys may only hold word characters, spaces, - and /
INFOTEXT_CONVENTION = "CFGpp convention"


def current_convention() -> str:
    return cfgpp.normalize_convention(getattr(shared.opts, SETTING, cfgpp.DEFAULT_CONVENTION))


def _seeded_randn_like(x):
    # resolved per draw: the WebUI swaps k_diffusion.sampling.torch for its seeded per-image RNG every pass
    return k_diffusion.sampling.torch.randn_like(x)


def _host_brownian(x, sigma_min, sigma_max):
    """An SDE sampler called without a noise sampler (setting "Do not make DPM++ SDE deterministic across
    different batch sizes") builds the host's Brownian tree as the base k-diffusion samplers do."""
    return k_diffusion.sampling.BrownianTreeNoiseSampler(x, sigma_min, sigma_max)


def _blend_like_host(model, denoised_uncond, sigma):
    """Blend D_∅ exactly as the CFG denoiser blends the guided prediction for inpainting, including the
    `on_mask_blend` script hook (soft inpainting), so the preserved region follows the base sampler's rule."""
    if model.mask is None or model.mask_before_denoising:
        return denoised_uncond
    blended = denoised_uncond * model.nmask + model.init_latent * model.mask
    if model.p is not None and model.p.scripts is not None:
        mba = scripts.MaskBlendArgs(denoised_uncond, model.nmask, model.init_latent, model.mask, blended,
                                    denoiser=model, sigma=sigma)
        model.p.scripts.on_mask_blend(model.p, mba)
        blended = mba.blended_latent
    return blended


def _progress(n, disable):
    return trange(n, disable=disable)


def _with_infotext(bound):
    """Write λ and the convention of this pass into the generation's infotext, then sample."""
    @functools.wraps(bound)
    def sample(model, x, sigmas, extra_args=None, *args, **kwargs):
        p = getattr(model, "p", None)
        if p is not None and extra_args is not None and "cond_scale" in extra_args:
            convention = current_convention()
            lam = round(cfgpp.guidance_lambda(extra_args["cond_scale"], convention), 6)
            glue_infotext.add_infotext(p, {INFOTEXT_LAMBDA: lam, INFOTEXT_CONVENTION: convention})
        return bound(model, x, sigmas, extra_args, *args, **kwargs)
    return sample


def register():
    """The base samplers the WebUI lacks (RES multistep, gradient estimation), then every CFG++ sampler with the
    options of its base."""
    entries = []
    for base in cfgpp.BASE_SAMPLERS:
        bound = cfgpp.make_sampler(base, randn_like=_seeded_randn_like, progress=_progress)
        entries.append(glue_samplers.SamplerEntry(base.label, bound, base.aliases, options=base.options,
                                                  extra_params=base.extra_params))
    for definition in cfgpp.SAMPLERS:
        bound = cfgpp.make_sampler(definition, convention=current_convention, randn_like=_seeded_randn_like,
                                   brownian_noise=_host_brownian, uncond_blend=_blend_like_host, progress=_progress)
        guided = glue_host.current().guided_sampler(_with_infotext(bound))  # refuses before sampling where needed
        entries.append(glue_samplers.SamplerEntry(definition.label, guided, definition.aliases,
                                                  definition.base_label, definition.base_function,
                                                  extra_params=definition.extra_params))
    return glue_host.current().register_samplers(entries)  # never replaces a host sampler of the same name


def on_ui_settings():
    import gradio as gr
    shared.opts.add_option(SETTING, shared.OptionInfo(
        cfgpp.DEFAULT_CONVENTION, "CFG++ samplers: what the CFG scale means", gr.Radio,
        {"choices": list(cfgpp.CONVENTIONS)}, section=("sampler-params", "Sampler parameters"),
    ).info("CFG/12.5 = as the WebUI's DDIM CFG++ (λ = CFG / 12.5); CFG=lambda = as ComfyUI and Forge"))


def on_infotext_pasted(infotext, params):
    """Keep λ when the image was made under another convention: rewrite the CFG scale the paste will set."""
    if INFOTEXT_LAMBDA not in params or INFOTEXT_CONVENTION not in params:
        return
    if "Sampler" in params:  # made by ours: ours may be registered under another label on this host
        params["Sampler"] = glue_host.current().registered_label(params["Sampler"])
    try:
        made_with = cfgpp.normalize_convention(params[INFOTEXT_CONVENTION])
        lam = float(params[INFOTEXT_LAMBDA])
    except ValueError:
        return
    if made_with != current_convention():
        params["CFG scale"] = str(round(cfgpp.cfg_scale_for_lambda(lam, current_convention()), 6))


register()
script_callbacks.on_ui_settings(on_ui_settings)
script_callbacks.on_infotext_pasted(on_infotext_pasted)
