"""Host double of modules.sd_samplers_lcm: the "LCM" sampler (v1.10.1 `LCMCompVisDenoiser`, `sample_lcm`,
`CFGDenoiserLCM`, `LCMSampler`, `samplers_data_lcm`), written anew with the same behaviour:

- the denoiser keeps 50 of the model's 1000 alphas (every 20th, from t = 999 down), so its `sigmas` (what
  `get_sigmas` spaces, with `skip_steps` = 20) differ from the k-diffusion CompVis denoiser's; a sigma maps to the
  timestep `argmin |log σ − log σ_k| · 20 + 19`; the output is the LCM consistency blend
  `c_out · (x + eps · c_out_eps) + c_skip · x` with the scaled timestep 10 t and sigma_data 0.5.
- `sample_lcm`: one model call per step at `sigmas[i]`, callback, `x = denoised`, plus
  `sigmas[i+1] · noise_sampler(...)` while `sigmas[i+1] > 0` (default noise sampler: `torch.randn_like` of
  k-diffusion's module, i.e. the WebUI's seeded noise). Its progress loop is k-diffusion's `trange`, imported
  into this module as v1.10.1 does.
"""
import torch

from k_diffusion import sampling, utils
from k_diffusion.external import DiscreteEpsDDPMDenoiser
from k_diffusion.sampling import default_noise_sampler, trange

from . import sd_samplers_cfg_denoiser, sd_samplers_common, sd_samplers_kdiffusion, shared

TIMESTEPS, ORIGINAL_TIMESTEPS = 1000, 50


class LCMCompVisDenoiser(DiscreteEpsDDPMDenoiser):
    def __init__(self, model):
        self.skip_steps = TIMESTEPS // ORIGINAL_TIMESTEPS
        picked = [TIMESTEPS - 1 - k * self.skip_steps for k in range(ORIGINAL_TIMESTEPS)][::-1]
        alphas = model.alphas_cumprod[picked].to(device=model.device, dtype=torch.float32)
        super().__init__(model, alphas, quantize=None)

    def get_sigmas(self, n=None):
        if n is None:
            return sampling.append_zero(self.sigmas.flip(0))
        t = torch.linspace(self.sigma_to_t(self.sigma_max), self.sigma_to_t(self.sigma_min), n, device=shared.sd_model.device)
        return sampling.append_zero(self.t_to_sigma(t))

    def sigma_to_t(self, sigma, quantize=None):
        nearest = (sigma.log() - self.log_sigmas[:, None]).abs().argmin(dim=0).view(sigma.shape)
        return nearest * self.skip_steps + (self.skip_steps - 1)

    def t_to_sigma(self, timestep):
        index = torch.clamp(((timestep - (self.skip_steps - 1)) / self.skip_steps).float(), min=0, max=len(self.sigmas) - 1)
        return super().t_to_sigma(index)

    def get_eps(self, *args, **kwargs):
        return self.inner_model.apply_model(*args, **kwargs)

    def get_scaled_out(self, sigma, output, input):
        sigma_data = 0.5
        scaled = utils.append_dims(self.sigma_to_t(sigma), output.ndim) * 10.0
        c_skip = sigma_data ** 2 / (scaled ** 2 + sigma_data ** 2)
        c_out = scaled / (scaled ** 2 + sigma_data ** 2) ** 0.5
        return c_out * output + c_skip * input

    def forward(self, input, sigma, **kwargs):
        c_out, c_in = [utils.append_dims(s, input.ndim) for s in self.get_scalings(sigma)]
        eps = self.get_eps(input * c_in, self.sigma_to_t(sigma), **kwargs)
        return self.get_scaled_out(sigma, input + eps * c_out, input)


def sample_lcm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = default_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in trange(len(sigmas) - 1, disable=disable):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        if callback is not None:
            callback({'x': x, 'i': i, 'sigma': sigmas[i], 'sigma_hat': sigmas[i], 'denoised': denoised})
        x = denoised
        if sigmas[i + 1] > 0:
            x += sigmas[i + 1] * noise_sampler(sigmas[i], sigmas[i + 1])
    return x


class CFGDenoiserLCM(sd_samplers_cfg_denoiser.CFGDenoiser):
    @property
    def inner_model(self):
        if self.model_wrap is None:
            self.model_wrap = LCMCompVisDenoiser(shared.sd_model)
        return self.model_wrap


class LCMSampler(sd_samplers_kdiffusion.KDiffusionSampler):
    def __init__(self, funcname, sd_model, options=None):
        super().__init__(funcname, sd_model, options)
        self.model_wrap_cfg = CFGDenoiserLCM(self)
        self.model_wrap = self.model_wrap_cfg.inner_model


samplers_lcm = [('LCM', sample_lcm, ['k_lcm'], {})]
samplers_data_lcm = [
    sd_samplers_common.SamplerData(label, lambda model, funcname=funcname: LCMSampler(funcname, model), aliases, options)
    for label, funcname, aliases, options in samplers_lcm
]
