"""Host double of modules.sd_schedulers: the v1.10.1 schedule types (same names, labels, options, math)."""
import dataclasses

import numpy as np
import torch
from scipy import stats

import k_diffusion.sampling as kds

from . import shared


@dataclasses.dataclass
class Scheduler:
    name: str
    label: str
    function: object
    default_rho: float = -1
    need_inner_model: bool = False
    aliases: list = None


def _uniform(n, sigma_min, sigma_max, inner_model, device):
    return inner_model.get_sigmas(n).to(device)


def _timestep_spaced(n, sigma_min, sigma_max, inner_model, device, drop_last):
    start = inner_model.sigma_to_t(torch.tensor(sigma_max))
    end = inner_model.sigma_to_t(torch.tensor(sigma_min))
    ts = torch.linspace(start, end, n + 1)[:-1] if drop_last else torch.linspace(start, end, n)
    return torch.FloatTensor([float(inner_model.t_to_sigma(t)) for t in ts] + [0.0]).to(device)


def _sgm_uniform(n, sigma_min, sigma_max, inner_model, device):
    return _timestep_spaced(n, sigma_min, sigma_max, inner_model, device, drop_last=True)


def _normal(n, sigma_min, sigma_max, inner_model, device):
    return _timestep_spaced(n, sigma_min, sigma_max, inner_model, device, drop_last=False)


def _align_your_steps(n, sigma_min, sigma_max, device):
    if shared.sd_model.is_sdxl:
        base = [14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029]
    else:
        base = [14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029]
    if n == len(base):
        return torch.FloatTensor(base + [0.0]).to(device)
    ys = np.interp(np.linspace(0, 1, n), np.linspace(0, 1, len(base)), np.log(base[::-1]))
    return torch.FloatTensor(np.append(np.exp(ys)[::-1], [0.0])).to(device)


def _kl_optimal(n, sigma_min, sigma_max, device):
    a_min, a_max = np.arctan(sigma_min), np.arctan(sigma_max)
    i = torch.arange(n + 1, device=device)
    return torch.tan(i / n * a_min + (1.0 - i / n) * a_max)


def _simple(n, sigma_min, sigma_max, inner_model, device):
    ss = len(inner_model.sigmas) / n
    return torch.FloatTensor([float(inner_model.sigmas[-(1 + int(x * ss))]) for x in range(n)] + [0.0]).to(device)


def _ddim(n, sigma_min, sigma_max, inner_model, device):
    ss = max(len(inner_model.sigmas) // n, 1)
    sigs = [float(inner_model.sigmas[x]) for x in range(1, len(inner_model.sigmas), ss)]
    return torch.FloatTensor(sigs[::-1] + [0.0]).to(device)


def _beta(n, sigma_min, sigma_max, inner_model, device):
    ts = [stats.beta.ppf(x, shared.opts.beta_dist_alpha, shared.opts.beta_dist_beta) for x in 1 - np.linspace(0, 1, n)]
    return torch.FloatTensor([sigma_min + t * (sigma_max - sigma_min) for t in ts] + [0.0]).to(device)


schedulers = [
    Scheduler("automatic", "Automatic", None),
    Scheduler("uniform", "Uniform", _uniform, need_inner_model=True),
    Scheduler("karras", "Karras", kds.get_sigmas_karras, default_rho=7.0),
    Scheduler("exponential", "Exponential", kds.get_sigmas_exponential),
    Scheduler("polyexponential", "Polyexponential", kds.get_sigmas_polyexponential, default_rho=1.0),
    Scheduler("sgm_uniform", "SGM Uniform", _sgm_uniform, need_inner_model=True, aliases=["SGMUniform"]),
    Scheduler("kl_optimal", "KL Optimal", _kl_optimal),
    Scheduler("align_your_steps", "Align Your Steps", _align_your_steps),
    Scheduler("simple", "Simple", _simple, need_inner_model=True),
    Scheduler("normal", "Normal", _normal, need_inner_model=True),
    Scheduler("ddim", "DDIM", _ddim, need_inner_model=True),
    Scheduler("beta", "Beta", _beta, need_inner_model=True),
]
schedulers_map = {**{x.name: x for x in schedulers}, **{x.label: x for x in schedulers}}
