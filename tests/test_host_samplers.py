"""The host double's sampler table and sampler calls agree with WebUI v1.10.1 (issue 9 item 8).

Facts read in v1.10.1: `modules/sd_samplers_kdiffusion.py` (`samplers_k_diffusion`, `sampler_extra_params`,
`KDiffusionSampler.sample` / `sample_img2img`), `modules/sd_samplers_extra.py` (`restart_sampler`),
`modules/sd_samplers_timesteps.py` + `sd_samplers_timesteps_impl.py` (DDIM, DDIM CFG++, PLMS, UniPC),
`modules/sd_samplers_lcm.py`, `modules/sd_samplers.py` (`all_samplers` order), `modules/sd_samplers_common.py`
(`Sampler.initialize`, `create_noise_sampler`, `replace_torchsde_browinan`)."""
import functools

import pytest
import torch

import k_diffusion.sampling
from modules import (rng, script_callbacks, sd_samplers, sd_samplers_common, sd_samplers_extra, sd_samplers_kdiffusion,
                     sd_samplers_timesteps, sd_samplers_timesteps_impl, shared)

from support.generation import img2img, load_model, reset_host, txt2img

K_DIFFUSION = ["DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun", "DPM++ 2S a", "DPM++ 3M SDE", "Euler a",
               "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM fast", "DPM adaptive", "Restart"]
TIMESTEPS = ["DDIM", "DDIM CFG++", "PLMS", "UniPC"]
V1101 = K_DIFFUSION + TIMESTEPS + ["LCM"]


@pytest.fixture(autouse=True)
def _host():
    reset_host()
    load_model("sd15")
    yield
    script_callbacks.clear_callbacks()
    reset_host()


def test_every_sampler_of_v1_10_1_in_order_with_aliases():
    """sd_samplers.all_samplers = k-diffusion table + timestep table + LCM (extensions append after them)."""
    names = [s.name for s in sd_samplers.all_samplers]
    assert names[:len(V1101)] == V1101
    import lib_cfgpp
    suite = {d.label for d in (*lib_cfgpp.SAMPLERS, *lib_cfgpp.BASE_SAMPLERS)}
    assert set(names[len(V1101):]) <= suite, "only the suite's samplers (CFG++ and their bases) are appended"
    aliases = {"DPM++ 2M SDE Heun": "k_dpmpp_2m_sde_heun", "DPM++ 3M SDE": "k_dpmpp_3m_sde", "DPM fast": "k_dpm_fast",
               "DPM adaptive": "k_dpm_ad", "Restart": "restart", "LCM": "k_lcm", "UniPC": "unipc", "PLMS": "plms",
               "DDIM CFG++": "ddim_cfgpp", "Euler a": "k_euler_ancestral"}
    for name, alias in aliases.items():
        assert alias in sd_samplers.all_samplers_map[name].aliases
        assert sd_samplers.samplers_map[alias] == name
    assert set(K_DIFFUSION) == set(sd_samplers_kdiffusion.k_diffusion_samplers_map)


def test_options_are_v1_10_1s():
    options = {name: sd_samplers.all_samplers_map[name].options for name in V1101}
    second_order = {n for n, o in options.items() if o.get("second_order")}
    assert second_order == {"DPM++ SDE", "DPM++ 2S a", "Heun", "DPM2", "DPM2 a", "Restart"}
    assert {n for n, o in options.items() if o.get("brownian_noise")} == {"DPM++ SDE", "DPM++ 2M SDE", "DPM++ 2M SDE Heun",
                                                                          "DPM++ 3M SDE"}
    assert {n for n, o in options.items() if o.get("discard_next_to_last_sigma")} == {"DPM++ 3M SDE", "DPM2", "DPM2 a"}
    assert {n for n, o in options.items() if o.get("uses_ensd")} == {"DPM++ 2S a", "Euler a", "DPM2 a", "DPM fast",
                                                                     "DPM adaptive"}
    assert options["DPM++ 2M SDE Heun"]["solver_type"] == "heun" and "solver_type" not in options["DPM++ 2M SDE"]
    assert options["DPM++ 3M SDE"]["scheduler"] == "exponential" and options["Restart"]["scheduler"] == "karras"
    assert sd_samplers.all_samplers_map["DPM2 a"].total_steps(10) == 20  # SamplerData.total_steps doubles 2nd order
    assert sd_samplers.all_samplers_map["Restart"].constructor(shared.sd_model).func is sd_samplers_extra.restart_sampler
    assert sd_samplers_kdiffusion.sampler_extra_params["sample_dpmpp_3m_sde"] == ["s_noise"]
    assert sd_samplers_kdiffusion.sampler_extra_params["sample_dpm_fast"] == ["s_noise"]
    assert "sample_euler_ancestral" not in sd_samplers_kdiffusion.sampler_extra_params


def _spy(monkeypatch, name):
    """Replace k_diffusion.sampling.<name> (looked up when a KDiffusionSampler is made) by a recorder."""
    real = getattr(k_diffusion.sampling, name)
    calls = []

    @functools.wraps(real)
    def spy(model, x, *args, **kwargs):
        calls.append({"x": x.clone(), **kwargs})
        return real(model, x, *args, **kwargs)
    monkeypatch.setattr(k_diffusion.sampling, name, spy)
    return calls


def test_kdiffusion_call_details(monkeypatch):
    """KDiffusionSampler.sample/sample_img2img: disable=False, sigmas, noise sampler for brownian samplers built on the
    FULL schedule (img2img too), solver_type for the Heun variant, s_noise from the settings, DPM fast arguments."""
    calls = _spy(monkeypatch, "sample_dpmpp_2m_sde")
    schedules = []
    real_noise_sampler = sd_samplers_common.Sampler.create_noise_sampler
    monkeypatch.setattr(sd_samplers_common.Sampler, "create_noise_sampler",
                        lambda self, x, sigmas, p: schedules.append(sigmas.clone()) or real_noise_sampler(self, x, sigmas, p))
    txt2img(sampler_name="DPM++ 2M SDE Heun", steps=5)
    img2img(sampler_name="DPM++ 2M SDE", steps=5, denoising_strength=0.5)
    (heun, plain) = calls
    assert heun["disable"] is False and plain["disable"] is False
    assert heun["solver_type"] == "heun" and "solver_type" not in plain
    assert isinstance(plain["noise_sampler"], k_diffusion.sampling.BrownianTreeNoiseSampler)
    assert len(schedules[1]) == 6 and len(plain["sigmas"]) == int(0.5 * 5) + 2  # full schedule vs the walked tail
    assert torch.equal(schedules[1][-len(plain["sigmas"]):], plain["sigmas"])

    shared.opts.s_noise = 0.5
    calls = _spy(monkeypatch, "sample_dpmpp_2s_ancestral")
    result = txt2img(sampler_name="DPM++ 2S a", steps=3)
    assert calls[0]["s_noise"] == 0.5 and result.extra_generation_params["Sigma noise"] == 0.5

    calls = _spy(monkeypatch, "sample_dpm_fast")
    txt2img(sampler_name="DPM fast", steps=4)
    img2img(sampler_name="DPM fast", steps=4, denoising_strength=0.5)
    sigmas = sd_samplers.create_sampler("DPM fast", shared.sd_model).model_wrap.sigmas
    assert calls[0]["n"] == 4 and calls[0]["sigma_min"] == sigmas[0].item() and calls[0]["sigma_max"] == sigmas[-1].item()
    assert "sigmas" not in calls[0] and calls[1]["n"] == int(0.5 * 4) + 1 and calls[1]["sigma_min"] > 0


def test_brownian_noise_is_seeded_per_image():
    """replace_torchsde_browinan: the tree draws from randn_local(seed): image 2 of a batch == that seed alone."""
    batch = txt2img(sampler_name="DPM++ SDE", steps=3, seed=5, batch_size=2).latents
    alone = txt2img(sampler_name="DPM++ SDE", steps=3, seed=6).latents
    assert torch.allclose(batch[1], alone[0], atol=1e-5)
    assert not torch.allclose(batch[0], alone[0], atol=1e-3)
    import torchsde._brownian.brownian_interval as brownian
    assert brownian._randn.__module__ == sd_samplers_common.__name__


@pytest.mark.parametrize("sgm", [False, True])
def test_sgm_noise_multiplier(monkeypatch, sgm):
    """KDiffusionSampler.sample: x * sigmas[0], or x * sqrt(1 + sigmas[0]²) with the setting (and its infotext)."""
    shared.opts.sgm_noise_multiplier = sgm
    calls = _spy(monkeypatch, "sample_euler")
    result = txt2img(sampler_name="Euler", steps=3, seed=9)
    noise = rng.ImageRNG((4, 8, 8), [9]).next()
    sigma0 = calls[0]["sigmas"][0]
    scale = torch.sqrt(1.0 + sigma0 ** 2) if sgm else sigma0
    assert torch.allclose(calls[0]["x"], noise * scale, atol=1e-5)
    assert result.extra_generation_params.get("SGM noise multiplier", False) is sgm


def test_img2img_extra_noise_kdiffusion_and_timesteps(monkeypatch):
    """sample_img2img (both families): extra noise through the extra_noise callback, scaled by the setting
    (timesteps: also by sqrt(alphas_cumprod[t_enc])), infotext "Extra noise"."""
    shared.opts.img2img_extra_noise = 0.5
    seen = []

    def extra(params):  # xi is changed in place afterwards: keep copies
        seen.append((params.x.clone(), params.xi.clone(), params.noise.clone()))
        params.noise = torch.ones_like(params.noise)
    script_callbacks.on_extra_noise(extra)
    calls = _spy(monkeypatch, "sample_euler")
    result = img2img(sampler_name="Euler", steps=4, denoising_strength=0.5)
    (x_init, xi, noise), sigmas = seen[0], calls[0]["sigmas"]
    assert torch.allclose(xi, x_init + noise * sigmas[0], atol=1e-6)
    assert torch.allclose(calls[0]["x"], xi + 0.5, atol=1e-6)
    assert result.extra_generation_params["Extra noise"] == 0.5

    first_x = []
    script_callbacks.on_cfg_denoiser(lambda params: first_x.append(params.x[:1].clone()))
    img2img(sampler_name="DDIM", steps=4, denoising_strength=0.5)
    timesteps = torch.clip(torch.asarray(list(range(0, 1000, 250))) + 1, 0, 999)
    a = shared.sd_model.alphas_cumprod[timesteps[int(0.5 * 4)]]
    x_init, xi, noise = seen[1]
    assert torch.allclose(xi, x_init * a.sqrt() + noise * (1 - a).sqrt(), atol=1e-6)
    assert torch.allclose(first_x[0], xi + 0.5 * a.sqrt(), atol=1e-6)


def test_timestep_family_calls(monkeypatch):
    """v1.10.1 timestep samplers: DDIM N timesteps -> N-1 calls; PLMS a second call at the next timestep in its first
    step only; UniPC N calls on its own grid 999 .. (not get_timesteps), is_img2img in img2img; disable=False."""
    values = []
    script_callbacks.on_cfg_denoiser(lambda params: values.append(float(params.sigma[0])))
    disables = []
    real_trange = sd_samplers_timesteps_impl.tqdm.trange
    monkeypatch.setattr(sd_samplers_timesteps_impl.tqdm, "trange", lambda n, disable=None: disables.append(disable) or real_trange(n, disable=True))

    txt2img(sampler_name="DDIM", steps=5)
    timesteps = [float(t) for t in torch.clip(torch.asarray(list(range(0, 1000, 200))) + 1, 0, 999).flip(0)]
    assert values == timesteps[:-1] and disables == [False]

    values.clear()
    txt2img(sampler_name="PLMS", steps=5)
    assert values == [timesteps[0], timesteps[1], *timesteps[1:-1]]

    values.clear()
    txt2img(sampler_name="UniPC", steps=5)
    assert values == pytest.approx([999.0, 799.2, 599.4, 399.6, 199.8])
    spy_calls = []
    real_unipc = sd_samplers_timesteps_impl.unipc
    data = sd_samplers.all_samplers_map["UniPC"]
    monkeypatch.setitem(sd_samplers.all_samplers_map, "UniPC", data._replace(constructor=lambda model: sd_samplers_timesteps.CompVisSampler(
        functools.wraps(real_unipc)(lambda *a, **k: spy_calls.append(k) or real_unipc(*a, **k)), model)))
    img2img(sampler_name="UniPC", steps=10, denoising_strength=0.5)
    assert spy_calls[0]["is_img2img"] is True and len(spy_calls[0]["timesteps"]) == 5 and spy_calls[0]["disable"] is False


def test_restart_walks_its_own_schedule_from_20_steps():
    """restart_sampler: below 20 steps Heun over get_sigmas; from 20 steps a re-spaced schedule plus a restart segment
    going back up in sigma (so its model calls are not on get_sigmas)."""
    values = []
    script_callbacks.on_cfg_denoiser(lambda params: values.append(float(params.sigma[0])))
    for steps in (5, 20):
        values.clear()
        holder = {}
        txt2img(sampler_name="Restart", steps=steps, p_hook=lambda p: holder.setdefault("p", p))
        sigmas = sd_samplers.create_sampler("Restart", shared.sd_model).get_sigmas(holder["p"], steps).tolist()
        on_schedule = all(any(abs(v - s) < 1e-4 * s for s in sigmas) for v in values)
        went_up = any(b > a * (1 + 1e-6) for a, b in zip(values, values[1:]) if b != a)
        assert (on_schedule, went_up) == ((True, False) if steps == 5 else (False, True))
        assert len(sd_samplers_extra.heun_steps(torch.tensor(sigmas))) == steps


def test_lcm_walks_its_own_denoisers_sigmas():
    values = []
    script_callbacks.on_cfg_denoiser(lambda params: values.append(float(params.sigma[0])))
    holder = {}
    txt2img(sampler_name="LCM", steps=4, p_hook=lambda p: holder.setdefault("p", p))
    sampler = sd_samplers.create_sampler("LCM", shared.sd_model)
    assert values == pytest.approx(sampler.get_sigmas(holder["p"], 4)[:-1].tolist())
    assert len(sampler.model_wrap.sigmas) == 50
