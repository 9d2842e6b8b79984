"""Closed-form denoisers for hand checks of the CFG++ samplers (float64, no network).

``AnalyticCFG`` follows the host's CFG denoiser contract (``cond_scale``, ``cond_scale_miltiplier``,
``need_last_noise_uncond`` / ``last_noise_uncond``) with nonlinear D_c and D_∅ in closed form, so a test can
write the expected steps by hand from ``d_cond`` / ``d_uncond`` / ``guided`` without calling the code under
test. ``Plain(fn)`` is an ordinary denoiser ``fn(x, s)`` for the base samplers. Both record the sigmas asked.
"""
import torch


class AnalyticCFG(torch.nn.Module):
    """Host-contract CFG denoiser with closed-form, nonlinear D_c and D_∅ (float64) for hand checks."""

    def __init__(self):
        super().__init__()
        self.cond_scale_miltiplier = 1.0
        self.need_last_noise_uncond = False
        self.last_noise_uncond = None
        self.calls = []

    @staticmethod
    def d_cond(x, s):
        return x / (1 + s ** 2) + 0.3 * torch.tanh(x) * s / (1 + s)

    @staticmethod
    def d_uncond(x, s):
        return 0.8 * x / (1 + s ** 2) - 0.2 * torch.sin(x) / (1 + s)

    def forward(self, x, sigma, cond_scale=1.0):
        s = sigma[0].item()
        self.calls.append(s)
        d_c, d_u = self.d_cond(x, s), self.d_uncond(x, s)
        if self.need_last_noise_uncond:
            self.last_noise_uncond = d_u.clone()
        return d_u + (d_c - d_u) * cond_scale * self.cond_scale_miltiplier


def guided(x, s, lam):
    """D_λ = D_∅ + λ(D_c − D_∅) of ``AnalyticCFG`` at (x, s)."""
    return AnalyticCFG.d_uncond(x, s) + lam * (AnalyticCFG.d_cond(x, s) - AnalyticCFG.d_uncond(x, s))


class Plain(torch.nn.Module):
    """An ordinary denoiser ``fn(x, s)`` (default: D_∅ of ``AnalyticCFG``) for the base samplers."""

    def __init__(self, fn=AnalyticCFG.d_uncond):
        super().__init__()
        self.fn = fn
        self.calls = []

    def forward(self, x, sigma, **_):
        s = sigma[0].item()
        self.calls.append(s)
        return self.fn(x, s)
