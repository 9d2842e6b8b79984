"""Host double of modules.sd_samplers_timesteps (v1.10.1): the timestep family DDIM, DDIM CFG++, PLMS, UniPC.

The model gets timesteps where k-diffusion passes sigmas and returns eps (v converted to eps). Follows v1.10.1
`CompVisSampler.get_timesteps` (discard-penultimate setting included), `sample` and `sample_img2img` (timesteps
`[:t_enc]`, noise at `timesteps[t_enc]`, `img2img_extra_noise` with the `extra_noise` callback, `is_img2img`
for UniPC), both passing `disable=False` to the sampler function and calling `add_infotext` afterwards.
"""
import inspect

import torch

from . import devices, sd_samplers_common, sd_samplers_timesteps_impl, shared
from .script_callbacks import ExtraNoiseParams, extra_noise_callback
from .sd_samplers_cfg_denoiser import CFGDenoiser
from .shared import opts

samplers_timesteps = [
    ('DDIM', sd_samplers_timesteps_impl.ddim, ['ddim'], {}),
    ('DDIM CFG++', sd_samplers_timesteps_impl.ddim_cfgpp, ['ddim_cfgpp'], {}),
    ('PLMS', sd_samplers_timesteps_impl.plms, ['plms'], {}),
    ('UniPC', sd_samplers_timesteps_impl.unipc, ['unipc'], {}),
]

samplers_data_timesteps = [
    sd_samplers_common.SamplerData(label, lambda model, funcname=funcname: CompVisSampler(funcname, model), aliases, options)
    for label, funcname, aliases, options in samplers_timesteps
]


class CompVisTimestepsDenoiser(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.inner_model = model

    def forward(self, input, timesteps, **kwargs):
        return self.inner_model.apply_model(input, timesteps, **kwargs)


class CompVisTimestepsVDenoiser(CompVisTimestepsDenoiser):
    def forward(self, input, timesteps, **kwargs):
        v = self.inner_model.apply_model(input, timesteps, **kwargs)
        a = self.inner_model.alphas_cumprod[timesteps.to(torch.int)][:, None, None, None]
        return a.sqrt() * v + (1 - a).sqrt() * input


class CFGDenoiserTimesteps(CFGDenoiser):
    def __init__(self, sampler):
        super().__init__(sampler)
        self.alphas = shared.sd_model.alphas_cumprod
        self.mask_before_denoising = True

    def get_pred_x0(self, x_in, x_out, sigma):
        a_t = self.alphas[sigma.to(dtype=int)][:, None, None, None]
        return (x_in - (1 - a_t).sqrt() * x_out) / a_t.sqrt()

    @property
    def inner_model(self):
        if self.model_wrap is None:
            cls = CompVisTimestepsVDenoiser if shared.sd_model.parameterization == "v" else CompVisTimestepsDenoiser
            self.model_wrap = cls(shared.sd_model)
        return self.model_wrap


class CompVisSampler(sd_samplers_common.Sampler):
    def __init__(self, funcname, sd_model):
        super().__init__(funcname)
        self.eta_option_field = 'eta_ddim'
        self.eta_infotext_field = 'Eta DDIM'
        self.eta_default = 0.0
        self.model_wrap_cfg = CFGDenoiserTimesteps(self)
        self.model_wrap = self.model_wrap_cfg.inner_model

    def get_timesteps(self, p, steps):
        discard = self.config is not None and self.config.options.get('discard_next_to_last_sigma', False)
        if opts.always_discard_next_to_last_sigma and not discard:
            discard = True
            p.extra_generation_params["Discard penultimate sigma"] = True
        steps += 1 if discard else 0
        return torch.clip(torch.asarray(list(range(0, 1000, 1000 // steps)), device=devices.device) + 1, 0, 999)

    def _launch(self, p, x, last_latent, steps, conditioning, unconditional_conditioning, image_conditioning, kwargs):
        self.last_latent = last_latent
        self.sampler_extra_args = {'cond': conditioning, 'image_cond': image_conditioning, 'uncond': unconditional_conditioning,
                                   'cond_scale': p.cfg_scale, 's_min_uncond': self.s_min_uncond}
        samples = self.launch_sampling(steps, lambda: self.func(self.model_wrap_cfg, x, extra_args=self.sampler_extra_args,
                                                                disable=False, callback=self.callback_state, **kwargs))
        self.add_infotext(p)
        return samples

    def sample_img2img(self, p, x, noise, conditioning, unconditional_conditioning, steps=None, image_conditioning=None):
        steps, t_enc = sd_samplers_common.setup_img2img_steps(p, steps)
        timesteps = self.get_timesteps(p, steps)
        a = shared.sd_model.alphas_cumprod[timesteps[t_enc]]
        xi = x * a.sqrt() + noise * (1 - a).sqrt()
        if opts.img2img_extra_noise > 0:
            p.extra_generation_params["Extra noise"] = opts.img2img_extra_noise
            extra_noise_params = ExtraNoiseParams(noise, x, xi)
            extra_noise_callback(extra_noise_params)
            xi += extra_noise_params.noise * opts.img2img_extra_noise * a.sqrt()

        kwargs = self.initialize(p)
        parameters = inspect.signature(self.func).parameters
        if 'timesteps' in parameters:
            kwargs['timesteps'] = timesteps[:t_enc]
        if 'is_img2img' in parameters:
            kwargs['is_img2img'] = True
        self.model_wrap_cfg.init_latent = x
        return self._launch(p, xi, x, t_enc + 1, conditioning, unconditional_conditioning, image_conditioning, kwargs)

    def sample(self, p, x, conditioning, unconditional_conditioning, steps=None, image_conditioning=None):
        steps = steps or p.steps
        timesteps = self.get_timesteps(p, steps)
        kwargs = self.initialize(p)
        if 'timesteps' in inspect.signature(self.func).parameters:
            kwargs['timesteps'] = timesteps
        return self._launch(p, x, x, steps, conditioning, unconditional_conditioning, image_conditioning, kwargs)
