"""Host double of modules.sd_samplers_common: SamplerData, the Sampler base, seeded-noise hijack."""
import collections
import inspect

import torch

import k_diffusion.sampling

from . import devices, shared
from .shared import opts, state

SamplerDataTuple = collections.namedtuple("SamplerData", ["name", "constructor", "aliases", "options"])


class SamplerData(SamplerDataTuple):
    def total_steps(self, steps):
        return steps * 2 if self.options.get("second_order", False) else steps


class InterruptedException(BaseException):
    pass


def replace_torchsde_brownian():
    """v1.10.1 `replace_torchsde_browinan`: the Brownian tree (DPM++ SDE family) draws its normals with
    `devices.randn_local(seed, size)`, so its noise follows the WebUI's per-seed RNG."""
    import torchsde._brownian.brownian_interval

    def torchsde_randn(size, dtype, device, seed):
        return devices.randn_local(seed, size).to(device=device, dtype=dtype)

    torchsde._brownian.brownian_interval._randn = torchsde_randn


replace_torchsde_brownian()


def setup_img2img_steps(p, steps=None):
    if opts.img2img_fix_steps or steps is not None:
        requested_steps = steps or p.steps
        steps = int(requested_steps / min(p.denoising_strength, 0.999)) if p.denoising_strength > 0 else 0
        t_enc = requested_steps - 1
    else:
        steps = p.steps
        t_enc = int(min(p.denoising_strength, 0.999) * steps)
    return steps, t_enc


def images_tensor_to_samples(image, approximation=None, model=None):
    """image [B,3,H,W] in [0,1] -> latents, one image at a time as the WebUI does."""
    model = model or shared.sd_model
    image = image.to(shared.device, dtype=torch.float32) * 2 - 1
    return torch.cat([model.get_first_stage_encoding(model.encode_first_stage(img[None])) for img in image])


def decode_first_stage(model, x):
    return model.decode_first_stage(x)


def store_latent(decoded):
    state.current_latent = decoded


def apply_refiner(cfg_denoiser, sigma=None):
    """v1.10.1 apply_refiner (called by the CFG denoiser before every model call): once the completed fraction of
    the schedule reaches `p.refiner_switch_at`, reload the weights of `p.refiner_checkpoint_info` in the middle of
    sampling (same config: into the same model object), recompute the conds and drop the denoiser's model wrap."""
    from . import sd_models
    if opts.refiner_switch_by_sample_steps or sigma is None:
        completed_ratio = cfg_denoiser.step / cfg_denoiser.total_steps
        cfg_denoiser.p.extra_generation_params["Refiner switch by sampling steps"] = True
    else:
        try:
            timestep = torch.argmin(torch.abs(cfg_denoiser.inner_model.sigmas.to(sigma.device) - torch.max(sigma)))
        except AttributeError:  # timestep samplers pass the timestep as "sigma"
            timestep = torch.max(sigma).to(dtype=int)
        completed_ratio = (999 - timestep) / 1000
    refiner_switch_at = cfg_denoiser.p.refiner_switch_at
    refiner_checkpoint_info = getattr(cfg_denoiser.p, "refiner_checkpoint_info", None)
    if refiner_switch_at is not None and completed_ratio < refiner_switch_at:
        return False
    if refiner_checkpoint_info is None or getattr(shared.sd_model, "sd_checkpoint_info", None) == refiner_checkpoint_info:
        return False
    if getattr(cfg_denoiser.p, "enable_hr", False):
        is_second_pass = cfg_denoiser.p.is_hr_pass
        if opts.hires_fix_refiner_pass == "first pass" and is_second_pass:
            return False
        if opts.hires_fix_refiner_pass == "second pass" and not is_second_pass:
            return False
        if opts.hires_fix_refiner_pass != "second pass":
            cfg_denoiser.p.extra_generation_params["Hires refiner"] = opts.hires_fix_refiner_pass
    cfg_denoiser.p.extra_generation_params["Refiner"] = refiner_checkpoint_info.short_title
    cfg_denoiser.p.extra_generation_params["Refiner switch at"] = refiner_switch_at
    with sd_models.SkipWritingToConfig():
        sd_models.reload_model_weights(info=refiner_checkpoint_info)
    cfg_denoiser.p.setup_conds()
    cfg_denoiser.update_inner_model()
    return True


class TorchHijack:
    """Stands in for `k_diffusion.sampling.torch`: `randn_like` draws the seeded per-image noise."""

    def __init__(self, p):
        self.rng = p.rng

    def __getattr__(self, item):
        if item == "randn_like":
            return self.randn_like
        if hasattr(torch, item):
            return getattr(torch, item)
        raise AttributeError(item)

    def randn_like(self, x):
        return self.rng.next()


class Sampler:
    def __init__(self, funcname):
        self.funcname = funcname
        self.func = funcname
        self.extra_params = []
        self.config: SamplerData = None
        self.last_latent = None
        self.s_min_uncond = None
        self.s_churn = 0.0
        self.s_tmin = 0.0
        self.s_tmax = float("inf")
        self.s_noise = 1.0
        self.eta_option_field = "eta_ancestral"
        self.eta_infotext_field = "Eta"
        self.eta_default = 1.0
        self.p = None
        self.model_wrap_cfg = None
        self.sampler_extra_args = None
        self.options = {}
        self.stop_at = None

    def callback_state(self, d):
        step = d["i"]
        if self.stop_at is not None and step > self.stop_at:
            raise InterruptedException
        state.sampling_step = step

    def launch_sampling(self, steps, func):
        self.model_wrap_cfg.steps = steps
        self.model_wrap_cfg.total_steps = self.config.total_steps(steps)
        state.sampling_steps = steps
        state.sampling_step = 0
        try:
            return func()
        except InterruptedException:
            return self.last_latent

    def initialize(self, p) -> dict:
        self.p = p
        self.model_wrap_cfg.p = p
        self.model_wrap_cfg.mask = getattr(p, "mask", None)
        self.model_wrap_cfg.nmask = getattr(p, "nmask", None)
        self.model_wrap_cfg.step = 0
        self.model_wrap_cfg.image_cfg_scale = getattr(p, "image_cfg_scale", None)
        self.eta = p.eta if p.eta is not None else getattr(opts, self.eta_option_field, 0.0)
        self.s_min_uncond = getattr(p, "s_min_uncond", 0.0)

        k_diffusion.sampling.torch = TorchHijack(p)

        parameters = inspect.signature(self.func).parameters
        kwargs = {name: getattr(p, name) for name in self.extra_params if hasattr(p, name) and name in parameters}
        if "eta" in parameters:
            if self.eta != self.eta_default:
                p.extra_generation_params[self.eta_infotext_field] = self.eta
            kwargs["eta"] = self.eta
        if self.extra_params:
            self._settings_extra_params(p, kwargs)
        return kwargs

    def _settings_extra_params(self, p, kwargs):
        """v1.10.1 `Sampler.initialize`: the sigma churn/tmin/tmax/noise *settings* override p's values when they
        differ from the sampler's defaults (tmax 0 = inf), and are written to p and the infotext."""
        settings = {"s_churn": (getattr(opts, "s_churn", p.s_churn), self.s_churn, "Sigma churn"),
                    "s_tmin": (getattr(opts, "s_tmin", p.s_tmin), self.s_tmin, "Sigma tmin"),
                    "s_tmax": (getattr(opts, "s_tmax", p.s_tmax) or self.s_tmax, self.s_tmax, "Sigma tmax"),
                    "s_noise": (getattr(opts, "s_noise", p.s_noise), self.s_noise, "Sigma noise")}
        for name, (value, default, label) in settings.items():
            if name in kwargs and value != default:
                kwargs[name] = value
                setattr(p, name, value)
                p.extra_generation_params[label] = value

    def create_noise_sampler(self, x, sigmas, p):
        """v1.10.1: a Brownian tree seeded with the batch's seeds (None with `no_dpmpp_sde_batch_determinism`)."""
        if shared.opts.no_dpmpp_sde_batch_determinism:
            return None
        from k_diffusion.sampling import BrownianTreeNoiseSampler
        sigma_min, sigma_max = sigmas[sigmas > 0].min(), sigmas.max()
        seeds = p.all_seeds[p.iteration * p.batch_size:(p.iteration + 1) * p.batch_size]
        return BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=seeds)

    def add_infotext(self, p):
        if self.model_wrap_cfg.padded_cond_uncond:
            p.extra_generation_params["Pad conds"] = True
        if self.model_wrap_cfg.padded_cond_uncond_v0:
            p.extra_generation_params["Pad conds v0"] = True
