"""Which sampling step a CFG denoiser call belongs to: the schedule the WebUI's sampler actually walks, and which
of its steps make a second model call, read from what the sampler is (its table options and its function).

k-diffusion samplers walk `get_sigmas(p, steps)` (img2img and the hires pass: only the tail from
`steps - t_enc - 1`), the timestep family its timesteps (img2img: the first `t_enc`), flipped to decreasing order.
Gate by locating a call's sigma in this list, never by counting model calls (the host may split batches).

No fixed schedule ("unknown", None), as in WebUI v1.10.1:
- DPM fast / DPM adaptive: their functions take no `sigmas` (they choose their own steps);
- Restart from 20 steps: `sd_samplers_extra.restart_sampler` re-spaces the schedule and inserts restart segments
  that go back up in sigma;
- UniPC: `sd_samplers_timesteps_impl.unipc` runs on its own time grid (999 .. 0), not on `get_timesteps`.

Second calls (v1.10.1's samplers on k-diffusion ab527a9, and ours, which copy their base's options):
- `second_order` samplers (Heun, DPM2, DPM2 a, DPM++ SDE, DPM++ 2S a, Restart; ours: DPM++ 2S a CFG++, DPM++ SDE
  CFG++, Heun CFG++, DPM2 CFG++) call again in every step whose next sigma is > 0, whatever eta (DPM++ SDE:
  at the log-midpoint); the ancestral ones (`second_order` and `uses_ensd`) only while sigma_down > 0
  (k-diffusion `get_ancestral_step` at the sampler's eta: always for eta <= 1);
- one call per step: the multistep and first-order ones, incl. ours (DPM++ 2M / 2M SDE / 3M SDE CFG++, Euler (a)
  CFG++, RES Multistep (Ancestral) and Gradient Estimation, plain and CFG++: no `second_order` option);
- PLMS calls again in its first step only (pseudo improved Euler at the next timestep).
"""
from __future__ import annotations

import inspect
from typing import Callable, NamedTuple, Optional, Union

from modules import sd_samplers_common

RESTART_RESPACES_FROM = 20  # v1.10.1 restart_sampler: from 20 steps it walks a schedule of its own


class PassSteps(NamedTuple):
    """`schedule`: decreasing sigmas/timesteps, steps run + 1 values; `second_calls`: which steps call twice
    (`lib_hidiffusion.StepLocator`'s argument: True = every step whose next value is > 0, or `(i) -> bool`)."""

    schedule: list
    second_calls: Union[bool, Callable[[int], bool]]


def pass_steps(sampler, p, img2img: bool, steps: Optional[int]) -> Optional[PassSteps]:
    """The steps of this sampling pass, or None when the sampler has no fixed schedule to locate calls on."""
    func = getattr(sampler, "func", None)
    name = getattr(func, "__name__", "")
    parameters = inspect.signature(func).parameters if callable(func) else {}
    options = sampler.config.options if getattr(sampler, "config", None) is not None else {}
    if img2img:
        steps, t_enc = sd_samplers_common.setup_img2img_steps(p, steps)
    else:
        steps, t_enc = steps or p.steps, None
    if hasattr(sampler, "get_sigmas"):
        if "sigmas" not in parameters:
            return None
        sigmas = sampler.get_sigmas(p, steps)
        values = [float(v) for v in (sigmas if t_enc is None else sigmas[steps - t_enc - 1:])]
        if name == "restart_sampler" and len(values) - 1 >= RESTART_RESPACES_FROM:
            return None
    elif hasattr(sampler, "get_timesteps"):
        if name == "unipc":
            return None
        timesteps = sampler.get_timesteps(p, steps)
        values = [float(v) for v in (timesteps if t_enc is None else timesteps[:t_enc]).flip(0)]
    else:
        return None
    return PassSteps(values, _second_calls(name, options, values, getattr(sampler, "eta", None), parameters))


def _second_calls(name, options, schedule, eta, parameters):
    if name == "plms":
        return lambda i: i == 0
    if not options.get("second_order", False):
        return False
    if not options.get("uses_ensd", False) or "eta" not in parameters:
        return True
    from k_diffusion.sampling import get_ancestral_step
    eta = 1.0 if eta is None else float(eta)

    def while_sigma_down(i):
        sigma, sigma_next = schedule[i], schedule[i + 1]
        return sigma_next > 0 and float(get_ancestral_step(sigma, sigma_next, eta=eta)[0]) > 0
    return while_sigma_down
