"""Host double of modules.sd_samplers_timesteps_impl (v1.10.1): `ddim`, `ddim_cfgpp`, `plms`, `unipc`.

The model is the timestep CFG denoiser: it gets integer-valued (UniPC: float) timesteps where k-diffusion passes
sigmas and returns eps. Written anew with v1.10.1's observable behaviour:

- `ddim` / `ddim_cfgpp`: N timesteps give N - 1 model calls, at `timesteps[N-1] .. timesteps[1]`; callback after
  each call's update with `i` = the loop index. DDIM CFG++ sets `cond_scale_miltiplier = 1/12.5`,
  `need_last_noise_uncond = True` and re-noises along the uncond eps (`last_noise_uncond`).
- `plms`: N - 1 steps; the first step makes a second model call at the next timestep (`timesteps[index - 1]`,
  pseudo improved Euler), later steps one call each (Adams-Bashforth on the stored eps).
- `unipc`: `modules/models/diffusion/uni_pc/uni_pc.py` UniPC (multistep, data prediction, variants bh1/bh2;
  "vary_coeff" is not reproduced) on its OWN time grid: `len(timesteps)` steps from t_T = 1 (img2img:
  `timesteps[-1] / 1000 + 1/1000`) to t_0 = 1/1000, spaced by `opts.uni_pc_skip_type`; model input time
  `(t - 1/1000) * 1000` (999 .. 0 for txt2img), i.e. NOT the values of `get_timesteps`. One model call per
  grid point except the last (N calls for N steps), the callback after each step's update. Its progress bar
  ignores `disable`.
Loops iterate `tqdm.trange` of this module (one iteration per step).
"""
import numpy as np
import torch
import tqdm

import k_diffusion.sampling

from . import shared


def _ddim_tables(model, timesteps, eta):
    alphas_cumprod = model.inner_model.inner_model.alphas_cumprod
    alphas = alphas_cumprod[timesteps]
    alphas_prev = alphas_cumprod[torch.nn.functional.pad(timesteps[:-1], pad=(1, 0))].to(torch.float64)
    sigmas = eta * np.sqrt((1 - alphas_prev.cpu().numpy()) / (1 - alphas.cpu()) * (1 - alphas.cpu() / alphas_prev.cpu().numpy()))
    return alphas, alphas_prev, torch.sqrt(1 - alphas), sigmas


def _ddim_loop(model, x, timesteps, extra_args, callback, disable, eta, cfgpp):
    alphas, alphas_prev, sqrt_one_minus_alphas, sigmas = _ddim_tables(model, timesteps, eta)
    if cfgpp:
        model.cond_scale_miltiplier = 1 / 12.5
        model.need_last_noise_uncond = True
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones((x.shape[0]))
    s_x = x.new_ones((x.shape[0], 1, 1, 1))
    for i in tqdm.trange(len(timesteps) - 1, disable=disable):
        index = len(timesteps) - 1 - i
        e_t = model(x, timesteps[index].item() * s_in, **extra_args)
        direction = model.last_noise_uncond if cfgpp else e_t
        a_t = alphas[index].item() * s_x
        a_prev = alphas_prev[index].item() * s_x
        sigma_t = sigmas[index].item() * s_x
        pred_x0 = (x - sqrt_one_minus_alphas[index].item() * s_x * e_t) / a_t.sqrt()
        dir_xt = (1. - a_prev - sigma_t ** 2).sqrt() * direction
        noise = sigma_t * k_diffusion.sampling.torch.randn_like(x)
        x = a_prev.sqrt() * pred_x0 + dir_xt + noise
        if callback is not None:
            callback({'x': x, 'i': i, 'sigma': 0, 'sigma_hat': 0, 'denoised': pred_x0})
    return x


@torch.no_grad()
def ddim(model, x, timesteps, extra_args=None, callback=None, disable=None, eta=0.0):
    return _ddim_loop(model, x, timesteps, extra_args, callback, disable, eta, cfgpp=False)


@torch.no_grad()
def ddim_cfgpp(model, x, timesteps, extra_args=None, callback=None, disable=None, eta=0.0):
    """DDIM CFG++ (v1.10.1): λ = CFG / 12.5, the re-noising direction is the uncond eps."""
    return _ddim_loop(model, x, timesteps, extra_args, callback, disable, eta, cfgpp=True)


@torch.no_grad()
def plms(model, x, timesteps, extra_args=None, callback=None, disable=None):
    alphas, alphas_prev, sqrt_one_minus_alphas, _ = _ddim_tables(model, timesteps, 0.0)
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    s_x = x.new_ones((x.shape[0], 1, 1, 1))
    old_eps = []

    def step_from(x, e_t, index):
        a_t, a_prev = alphas[index].item() * s_x, alphas_prev[index].item() * s_x
        pred_x0 = (x - sqrt_one_minus_alphas[index].item() * s_x * e_t) / a_t.sqrt()
        return a_prev.sqrt() * pred_x0 + (1. - a_prev).sqrt() * e_t, pred_x0

    for i in tqdm.trange(len(timesteps) - 1, disable=disable):
        index = len(timesteps) - 1 - i
        e_t = model(x, timesteps[index].item() * s_in, **extra_args)
        if not old_eps:  # pseudo improved Euler: a second call at the next timestep
            x_next, _ = step_from(x, e_t, index)
            e_t_next = model(x_next, timesteps[max(index - 1, 0)].item() * s_in, **extra_args)
            e_prime = (e_t + e_t_next) / 2
        elif len(old_eps) == 1:
            e_prime = (3 * e_t - old_eps[-1]) / 2
        elif len(old_eps) == 2:
            e_prime = (23 * e_t - 16 * old_eps[-1] + 5 * old_eps[-2]) / 12
        else:
            e_prime = (55 * e_t - 59 * old_eps[-1] + 37 * old_eps[-2] - 9 * old_eps[-3]) / 24
        x, pred_x0 = step_from(x, e_prime, index)
        old_eps = (old_eps + [e_t])[-3:]
        if callback is not None:
            callback({'x': x, 'i': i, 'sigma': 0, 'sigma_hat': 0, 'denoised': pred_x0})
    return x


# --- UniPC --------------------------------------------------------------------------------------------------------
class NoiseScheduleVP:
    """uni_pc.NoiseScheduleVP('discrete', alphas_cumprod): log α_t piecewise linear on t_n = (n + 1) / N."""

    def __init__(self, alphas_cumprod):
        self.total_N = len(alphas_cumprod)
        self.T = 1.
        self.t_array = torch.linspace(0., 1., self.total_N + 1)[1:]
        self.log_alpha_array = 0.5 * torch.log(alphas_cumprod.float().cpu())

    def marginal_log_mean_coeff(self, t):
        t_np = t.detach().cpu().reshape(-1).numpy()
        values = np.interp(t_np, self.t_array.numpy(), self.log_alpha_array.numpy())
        return torch.as_tensor(values, dtype=torch.float32, device=t.device).reshape(t.shape)

    def marginal_alpha(self, t):
        return torch.exp(self.marginal_log_mean_coeff(t))

    def marginal_std(self, t):
        return torch.sqrt(1. - torch.exp(2. * self.marginal_log_mean_coeff(t)))

    def marginal_lambda(self, t):
        log_mean = self.marginal_log_mean_coeff(t)
        return log_mean - 0.5 * torch.log(1. - torch.exp(2. * log_mean))

    def inverse_lambda(self, lamb):
        log_alpha = -0.5 * torch.logaddexp(torch.zeros((1,)), -2. * lamb.cpu())
        t = np.interp(log_alpha.numpy(), self.log_alpha_array.flip(0).numpy(), self.t_array.flip(0).numpy())
        return torch.as_tensor(t, dtype=torch.float32, device=lamb.device)


def unipc_time_grid(ns, skip_type, t_T, t_0, steps):
    """uni_pc.UniPC.get_time_steps: `steps + 1` continuous times from t_T to t_0."""
    if skip_type == "logSNR":
        lambdas = torch.linspace(ns.marginal_lambda(torch.as_tensor(t_T)).item(), ns.marginal_lambda(torch.as_tensor(t_0)).item(), steps + 1)
        return ns.inverse_lambda(lambdas)
    if skip_type == "time_uniform":
        return torch.linspace(t_T, t_0, steps + 1)
    if skip_type == "time_quadratic":
        return torch.linspace(t_T ** 0.5, t_0 ** 0.5, steps + 1).pow(2)
    raise ValueError(f"Unsupported skip_type {skip_type}")


class UniPCCFG:
    """UniPC (bh1/bh2, multistep, data prediction) driving the WebUI's timestep CFG denoiser."""

    def __init__(self, cfg_model, extra_args, callback, ns, variant):
        if variant not in ("bh1", "bh2"):
            raise NotImplementedError(f"UniPC variant {variant!r} is not reproduced by the host double")
        self.cfg_model, self.extra_args, self.callback, self.ns, self.variant = cfg_model, extra_args, callback, ns, variant
        self.index = 0

    def data_prediction(self, x, t):
        eps = self.cfg_model(x, (t - 1. / self.ns.total_N) * 1000., **self.extra_args)
        alpha, std = self.ns.marginal_alpha(t)[:, None, None, None], self.ns.marginal_std(t)[:, None, None, None]
        return (x - std * eps) / alpha

    def update(self, x, models, times, t, order, use_corrector):
        ns = self.ns
        lambda_0, lambda_t = ns.marginal_lambda(times[-1]), ns.marginal_lambda(t)
        h = lambda_t - lambda_0
        rks, d1s = [], []
        for i in range(1, order):
            rk = ((ns.marginal_lambda(times[-(i + 1)]) - lambda_0) / h)[0]
            rks.append(rk)
            d1s.append((models[-(i + 1)] - models[-1]) / rk)
        rks = torch.tensor(rks + [1.], device=x.device)
        hh = -h[0]
        h_phi_1 = torch.expm1(hh)
        b_h = hh if self.variant == "bh1" else torch.expm1(hh)
        rows, b = [], []
        h_phi_k, factorial = h_phi_1 / hh - 1, 1
        for i in range(1, order + 1):
            rows.append(torch.pow(rks, i - 1))
            b.append(h_phi_k * factorial / b_h)
            factorial *= i + 1
            h_phi_k = h_phi_k / hh - 1 / factorial
        r_matrix, b = torch.stack(rows), torch.tensor(b, device=x.device)
        alpha_t = torch.exp(ns.marginal_log_mean_coeff(t))[:, None, None, None]
        ratio = (ns.marginal_std(t) / ns.marginal_std(times[-1]))[:, None, None, None]
        base = ratio * x - alpha_t * h_phi_1 * models[-1]
        x_t = base
        if d1s:
            d1s = torch.stack(d1s, dim=1)
            rhos_p = torch.tensor([0.5], device=x.device) if order == 2 else torch.linalg.solve(r_matrix[:-1, :-1], b[:-1])
            x_t = base - alpha_t * b_h * torch.einsum('k,bkchw->bchw', rhos_p, d1s)
        if not use_corrector:
            return x_t, None
        rhos_c = torch.tensor([0.5], device=x.device) if order == 1 else torch.linalg.solve(r_matrix, b)
        model_t = self.data_prediction(x_t, t)
        correction = torch.einsum('k,bkchw->bchw', rhos_c[:-1], d1s) if len(d1s) else 0
        return base - alpha_t * b_h * (correction + rhos_c[-1] * (model_t - models[-1])), model_t

    def after_update(self, x, model_x):
        self.callback({'x': x, 'i': self.index, 'sigma': 0, 'sigma_hat': 0, 'denoised': model_x})
        self.index += 1

    @torch.no_grad()
    def sample(self, x, steps, t_start, skip_type, order, lower_order_final):
        assert steps >= order, "UniPC order must be < sampling steps"
        grid = unipc_time_grid(self.ns, skip_type, self.ns.T if t_start is None else t_start, 1. / self.ns.total_N, steps)
        batch = x.shape[0]
        models, times = [self.data_prediction(x, grid[0].expand(batch))], [grid[0].expand(batch)]
        with tqdm.tqdm(total=steps) as bar:
            for step in range(1, steps + 1):
                t = grid[step].expand(batch)
                step_order = min(order, steps + 1 - step) if lower_order_final and step >= order else min(step, order)
                x, model_x = self.update(x, models, times, t, step_order, use_corrector=step < steps)
                self.after_update(x, model_x)
                models, times = (models + [model_x])[-order:], (times + [t])[-order:]
                bar.update()
        return x


def unipc(model, x, timesteps, extra_args=None, callback=None, disable=None, is_img2img=False):
    ns = NoiseScheduleVP(model.inner_model.inner_model.alphas_cumprod)
    t_start = timesteps[-1] / 1000 + 1 / 1000 if is_img2img else None
    sampler = UniPCCFG(model, extra_args or {}, callback, ns, shared.opts.uni_pc_variant)
    return sampler.sample(x, steps=len(timesteps), t_start=t_start, skip_type=shared.opts.uni_pc_skip_type,
                          order=shared.opts.uni_pc_order, lower_order_final=shared.opts.uni_pc_lower_order_final)
