"""Host double of modules.sd_samplers_extra: the "Restart" sampler (follows `restart_sampler` of v1.10.1).

Contract reproduced (written anew, same observable behaviour):
- the walk is a list of Heun steps (sigma_from, sigma_to). Below 20 steps it is the given schedule. From 20 steps
  the schedule is rebuilt as Karras(steps - restart_steps * restart_times, sigmas[-2], sigmas[0]) and one restart
  segment (Karras(restart_steps + 1, ...) between the sigma nearest 0.1 and the one nearest 2, repeated
  restart_times) is inserted after the step that reaches 0.1 (restart_steps 9, restart_times 1; from 36 steps
  steps // 4 and 2). So from 20 steps the model is called on sigmas that are NOT `get_sigmas(p, steps)`, and
  the walk goes back up in sigma.
- each Heun step calls the model at sigma_from, calls back with `i` = the Heun step's index, then (unless
  sigma_to == 0) calls the model again at sigma_to (the correction).
- going back up in sigma adds `randn_like(x) * s_noise * sqrt(new² - old²)` from `k_diffusion.sampling.torch`
  (the WebUI's seeded noise).
- progress: one `tqdm.tqdm` iteration per Heun step.
"""
import torch
import tqdm

import k_diffusion.sampling


def _restart_plan(sigmas):
    """(schedule actually walked, {index into it: (segment steps, repeats, max sigma)})."""
    steps = sigmas.shape[0] - 1
    if steps < 20:
        return sigmas, {}
    segment_steps, repeats = (steps // 4, 2) if steps >= 36 else (9, 1)
    walked = k_diffusion.sampling.get_sigmas_karras(steps - segment_steps * repeats, sigmas[-2].item(),
                                                     sigmas[0].item(), device=sigmas.device)
    at = int(torch.argmin((walked - 0.1).abs()))
    return walked, {at: (segment_steps + 1, repeats, 2)}


def heun_steps(sigmas):
    """The (sigma_from, sigma_to) pairs Restart walks for `sigmas`, restart segments included, in order."""
    walked, restarts = _restart_plan(sigmas)
    pairs = []
    for i in range(len(walked) - 1):
        pairs.append((walked[i], walked[i + 1]))
        if i + 1 not in restarts:
            continue
        segment_steps, repeats, top = restarts[i + 1]
        top_index = int(torch.argmin((walked - top).abs()))
        if top_index >= i + 1:
            continue
        segment = k_diffusion.sampling.get_sigmas_karras(segment_steps, walked[i + 1].item(), walked[top_index].item(),
                                                          device=walked.device)[:-1]
        for _ in range(repeats):
            pairs.extend(zip(segment[:-1], segment[1:]))
    return pairs


@torch.no_grad()
def restart_sampler(model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise=1., restart_list=None):
    """Restart sampling (Xu et al. 2023) with the WebUI's automatic restart list (`restart_list` must be None)."""
    if restart_list is not None:
        raise NotImplementedError("the host double only reproduces the automatic restart list")
    extra_args = {} if extra_args is None else extra_args
    s_in = x.new_ones([x.shape[0]])
    previous = None
    for index, (sigma, sigma_next) in enumerate(tqdm.tqdm(heun_steps(sigmas), disable=disable)):
        if previous is not None and previous < sigma:
            x = x + k_diffusion.sampling.torch.randn_like(x) * s_noise * (sigma ** 2 - previous ** 2) ** 0.5
        denoised = model(x, sigma * s_in, **extra_args)
        slope = k_diffusion.sampling.to_d(x, sigma, denoised)
        if callback is not None:
            callback({'x': x, 'i': index, 'sigma': sigma_next, 'sigma_hat': sigma, 'denoised': denoised})
        step = sigma_next - sigma
        if sigma_next == 0:
            x = x + slope * step
        else:
            x_euler = x + slope * step
            correction = k_diffusion.sampling.to_d(x_euler, sigma_next, model(x_euler, sigma_next * s_in, **extra_args))
            x = x + (slope + correction) / 2 * step
        previous = sigma_next
    return x
