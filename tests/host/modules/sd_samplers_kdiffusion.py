"""Host double of modules.sd_samplers_kdiffusion (v1.10.1): the full k-diffusion sampler table and KDiffusionSampler.

`samplers_k_diffusion` is v1.10.1's table entry for entry (labels, functions, aliases, options: scheduler,
second_order, brownian_noise, solver_type, uses_ensd, discard_next_to_last_sigma), Restart from
`sd_samplers_extra`; entries whose function k-diffusion lacks are dropped as v1.10.1 does. The sampler calls
follow v1.10.1 `KDiffusionSampler.get_sigmas`, `sample` and `sample_img2img`:
- `sample`: `x * sigmas[0]`, or `x * sqrt(1 + sigmas[0]²)` with the SGM noise multiplier setting (infotext
  "SGM noise multiplier"); `n`, `sigma_min`/`sigma_max` (the model's range) for DPM fast/adaptive, `sigmas` else.
- `sample_img2img`: `sigma_sched = sigmas[steps - t_enc - 1:]`, `xi = x + noise * sigma_sched[0]` (or the
  model's `add_noise_to_latent`), then `img2img_extra_noise` through the `extra_noise` callback (infotext
  "Extra noise"); DPM fast/adaptive get `sigma_min = sigma_sched[-2]`, `sigma_max = sigma_sched[0]`,
  `n = len(sigma_sched) - 1`.
- brownian samplers get `create_noise_sampler(x, sigmas, p)` built on the FULL `sigmas` (img2img too);
  `solver_type='heun'` for "DPM++ 2M SDE Heun"; the settings-driven extra params via `initialize`.
- the function is called with `disable=False`, `callback=self.callback_state`; `add_infotext(p)` afterwards.
"""
import inspect

import torch

import k_diffusion.external
import k_diffusion.sampling

from . import devices, sd_samplers_cfg_denoiser, sd_samplers_common, sd_samplers_extra, sd_schedulers, shared
from .script_callbacks import ExtraNoiseParams, extra_noise_callback
from .shared import opts

samplers_k_diffusion = [
    ('DPM++ 2M', 'sample_dpmpp_2m', ['k_dpmpp_2m'], {'scheduler': 'karras'}),
    ('DPM++ SDE', 'sample_dpmpp_sde', ['k_dpmpp_sde'], {'scheduler': 'karras', "second_order": True, "brownian_noise": True}),
    ('DPM++ 2M SDE', 'sample_dpmpp_2m_sde', ['k_dpmpp_2m_sde'], {'scheduler': 'exponential', "brownian_noise": True}),
    ('DPM++ 2M SDE Heun', 'sample_dpmpp_2m_sde', ['k_dpmpp_2m_sde_heun'], {'scheduler': 'exponential', "brownian_noise": True, "solver_type": "heun"}),
    ('DPM++ 2S a', 'sample_dpmpp_2s_ancestral', ['k_dpmpp_2s_a'], {'scheduler': 'karras', "uses_ensd": True, "second_order": True}),
    ('DPM++ 3M SDE', 'sample_dpmpp_3m_sde', ['k_dpmpp_3m_sde'], {'scheduler': 'exponential', 'discard_next_to_last_sigma': True, "brownian_noise": True}),
    ('Euler a', 'sample_euler_ancestral', ['k_euler_a', 'k_euler_ancestral'], {"uses_ensd": True}),
    ('Euler', 'sample_euler', ['k_euler'], {}),
    ('LMS', 'sample_lms', ['k_lms'], {}),
    ('Heun', 'sample_heun', ['k_heun'], {"second_order": True}),
    ('DPM2', 'sample_dpm_2', ['k_dpm_2'], {'scheduler': 'karras', 'discard_next_to_last_sigma': True, "second_order": True}),
    ('DPM2 a', 'sample_dpm_2_ancestral', ['k_dpm_2_a'], {'scheduler': 'karras', 'discard_next_to_last_sigma': True, "uses_ensd": True, "second_order": True}),
    ('DPM fast', 'sample_dpm_fast', ['k_dpm_fast'], {"uses_ensd": True}),
    ('DPM adaptive', 'sample_dpm_adaptive', ['k_dpm_ad'], {"uses_ensd": True}),
    ('Restart', sd_samplers_extra.restart_sampler, ['restart'], {'scheduler': 'karras', "second_order": True}),
]

samplers_data_k_diffusion = [
    sd_samplers_common.SamplerData(label, lambda model, funcname=funcname: KDiffusionSampler(funcname, model), aliases, options)
    for label, funcname, aliases, options in samplers_k_diffusion
    if callable(funcname) or hasattr(k_diffusion.sampling, funcname)
]

sampler_extra_params = {
    'sample_euler': ['s_churn', 's_tmin', 's_tmax', 's_noise'],
    'sample_heun': ['s_churn', 's_tmin', 's_tmax', 's_noise'],
    'sample_dpm_2': ['s_churn', 's_tmin', 's_tmax', 's_noise'],
    'sample_dpm_fast': ['s_noise'],
    'sample_dpm_2_ancestral': ['s_noise'],
    'sample_dpmpp_2s_ancestral': ['s_noise'],
    'sample_dpmpp_sde': ['s_noise'],
    'sample_dpmpp_2m_sde': ['s_noise'],
    'sample_dpmpp_3m_sde': ['s_noise'],
}

k_diffusion_samplers_map = {x.name: x for x in samplers_data_k_diffusion}
k_diffusion_scheduler = {x.name: x.function for x in sd_schedulers.schedulers}


class CFGDenoiserKDiffusion(sd_samplers_cfg_denoiser.CFGDenoiser):
    @property
    def inner_model(self):
        if self.model_wrap is None:
            model = shared.sd_model
            constructor = getattr(model, 'create_denoiser', None)
            if constructor is not None:
                self.model_wrap = constructor()
            else:
                cls = k_diffusion.external.CompVisVDenoiser if model.parameterization == "v" else k_diffusion.external.CompVisDenoiser
                self.model_wrap = cls(model, quantize=opts.enable_quantization)
        return self.model_wrap


class KDiffusionSampler(sd_samplers_common.Sampler):
    def __init__(self, funcname, sd_model, options=None):
        super().__init__(funcname)
        self.extra_params = sampler_extra_params.get(funcname, [])
        self.options = options or {}
        self.func = funcname if callable(funcname) else getattr(k_diffusion.sampling, self.funcname)
        self.model_wrap_cfg = CFGDenoiserKDiffusion(self)
        self.model_wrap = self.model_wrap_cfg.inner_model

    def get_sigmas(self, p, steps):
        discard = self.config is not None and self.config.options.get('discard_next_to_last_sigma', False)
        if opts.always_discard_next_to_last_sigma and not discard:
            discard = True
            p.extra_generation_params["Discard penultimate sigma"] = True
        steps += 1 if discard else 0

        scheduler_name = (p.hr_scheduler if p.is_hr_pass else p.scheduler) or 'Automatic'
        if scheduler_name == 'Automatic':
            scheduler_name = self.config.options.get('scheduler', None)
        scheduler = sd_schedulers.schedulers_map.get(scheduler_name)

        m_sigma_min, m_sigma_max = self.model_wrap.sigmas[0].item(), self.model_wrap.sigmas[-1].item()
        sigma_min, sigma_max = (0.1, 10) if opts.use_old_karras_scheduler_sigmas else (m_sigma_min, m_sigma_max)

        override = getattr(p, 'sampler_noise_scheduler_override', None)
        if override:
            sigmas = override(steps)
        elif scheduler is None or scheduler.function is None:
            sigmas = self.model_wrap.get_sigmas(steps)
        else:
            kwargs = {'sigma_min': sigma_min, 'sigma_max': sigma_max}
            if scheduler.label != 'Automatic' and not p.is_hr_pass:
                p.extra_generation_params["Schedule type"] = scheduler.label
            elif scheduler.label != p.extra_generation_params.get("Schedule type"):
                p.extra_generation_params["Hires schedule type"] = scheduler.label
            if opts.sigma_min != 0 and opts.sigma_min != m_sigma_min:
                kwargs['sigma_min'] = opts.sigma_min
                p.extra_generation_params["Schedule min sigma"] = opts.sigma_min
            if opts.sigma_max != 0 and opts.sigma_max != m_sigma_max:
                kwargs['sigma_max'] = opts.sigma_max
                p.extra_generation_params["Schedule max sigma"] = opts.sigma_max
            if scheduler.default_rho != -1 and opts.rho != 0 and opts.rho != scheduler.default_rho:
                kwargs['rho'] = opts.rho
                p.extra_generation_params["Schedule rho"] = opts.rho
            if scheduler.need_inner_model:
                kwargs['inner_model'] = self.model_wrap
            if scheduler.label == 'Beta':
                p.extra_generation_params["Beta schedule alpha"] = opts.beta_dist_alpha
                p.extra_generation_params["Beta schedule beta"] = opts.beta_dist_beta
            sigmas = scheduler.function(n=steps, **kwargs, device=devices.cpu)

        if discard:
            sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
        return sigmas.cpu()

    def _noise_and_solver(self, kwargs, x, sigmas, p):
        if self.config.options.get('brownian_noise', False):
            kwargs['noise_sampler'] = self.create_noise_sampler(x, sigmas, p)
        if self.config.options.get('solver_type', None) == 'heun':
            kwargs['solver_type'] = 'heun'

    def _launch(self, p, x, steps, conditioning, unconditional_conditioning, image_conditioning, kwargs):
        self.sampler_extra_args = {'cond': conditioning, 'image_cond': image_conditioning, 'uncond': unconditional_conditioning,
                                   'cond_scale': p.cfg_scale, 's_min_uncond': self.s_min_uncond}
        samples = self.launch_sampling(steps, lambda: self.func(self.model_wrap_cfg, x, extra_args=self.sampler_extra_args,
                                                                disable=False, callback=self.callback_state, **kwargs))
        self.add_infotext(p)
        return samples

    def sample_img2img(self, p, x, noise, conditioning, unconditional_conditioning, steps=None, image_conditioning=None):
        steps, t_enc = sd_samplers_common.setup_img2img_steps(p, steps)
        sigmas = self.get_sigmas(p, steps)
        sigma_sched = sigmas[steps - t_enc - 1:]

        if hasattr(shared.sd_model, 'add_noise_to_latent'):
            xi = shared.sd_model.add_noise_to_latent(x, noise, sigma_sched[0])
        else:
            xi = x + noise * sigma_sched[0]
        if opts.img2img_extra_noise > 0:
            p.extra_generation_params["Extra noise"] = opts.img2img_extra_noise
            extra_noise_params = ExtraNoiseParams(noise, x, xi)
            extra_noise_callback(extra_noise_params)
            xi += extra_noise_params.noise * opts.img2img_extra_noise

        kwargs = self.initialize(p)
        parameters = inspect.signature(self.func).parameters
        if 'sigma_min' in parameters:  # DPM fast/adaptive: the last sigma is 0, which they refuse
            kwargs['sigma_min'] = sigma_sched[-2]
        if 'sigma_max' in parameters:
            kwargs['sigma_max'] = sigma_sched[0]
        if 'n' in parameters:
            kwargs['n'] = len(sigma_sched) - 1
        if 'sigma_sched' in parameters:
            kwargs['sigma_sched'] = sigma_sched
        if 'sigmas' in parameters:
            kwargs['sigmas'] = sigma_sched
        self._noise_and_solver(kwargs, x, sigmas, p)

        self.model_wrap_cfg.init_latent = x
        self.last_latent = x
        return self._launch(p, xi, t_enc + 1, conditioning, unconditional_conditioning, image_conditioning, kwargs)

    def sample(self, p, x, conditioning, unconditional_conditioning, steps=None, image_conditioning=None):
        steps = steps or p.steps
        sigmas = self.get_sigmas(p, steps)
        if opts.sgm_noise_multiplier:
            p.extra_generation_params["SGM noise multiplier"] = True
            x = x * torch.sqrt(1.0 + sigmas[0] ** 2.0)
        else:
            x = x * sigmas[0]

        kwargs = self.initialize(p)
        parameters = inspect.signature(self.func).parameters
        if 'n' in parameters:
            kwargs['n'] = steps
        if 'sigma_min' in parameters:
            kwargs['sigma_min'] = self.model_wrap.sigmas[0].item()
            kwargs['sigma_max'] = self.model_wrap.sigmas[-1].item()
        if 'sigmas' in parameters:
            kwargs['sigmas'] = sigmas
        self._noise_and_solver(kwargs, x, sigmas, p)

        self.last_latent = x
        return self._launch(p, x, steps, conditioning, unconditional_conditioning, image_conditioning, kwargs)
