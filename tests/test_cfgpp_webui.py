"""CFG++ samplers through the WebUI host double: registration, name/alias/X/Y/Z/infotext, and generations
(eps and v models, SDXL layout, img2img, inpainting blend, edit model, NGMS, hires)."""
import pytest
import torch
from PIL import Image

from modules import infotext_utils, processing, script_callbacks, sd_samplers, shared

import lib_cfgpp
import xyz_grid_double
from support.generation import img2img, load_model, reset_host, txt2img
from support.scripts_loader import load_script, unload_callbacks
from support.tiny_models import make_denoiser

LABELS = [d.label for d in lib_cfgpp.SAMPLERS]  # every CFG++ sampler
BASES = [d.label for d in lib_cfgpp.BASE_SAMPLERS]  # the base samplers the WebUI lacks, registered with them
OURS = BASES + LABELS
BASE_OF = {d.label: d.base_label for d in lib_cfgpp.SAMPLERS}
NOISY = {d.label for d in lib_cfgpp.SAMPLERS if d.ancestral or d.brownian}


@pytest.fixture(scope="module")
def script():
    module = load_script("cfgpp_samplers.py")
    yield module
    unload_callbacks("cfgpp_samplers.py")


@pytest.fixture(autouse=True)
def _host(script):
    reset_host()
    load_model("sd15")
    yield
    reset_host()


def test_registered_like_webui_samplers(script):
    names = sd_samplers.visible_sampler_names()
    assert all(label in names for label in LABELS)
    assert names.index("DDIM CFG++") < names.index("Euler CFG++"), "appended after the built-in samplers"
    for label in LABELS:
        assert not any(label.endswith(" " + s.label) for s in __import__("modules.sd_schedulers").sd_schedulers.schedulers)
    for label in LABELS:  # every twin has its base's options (scheduler, second_order, brownian_noise, ...)
        assert sd_samplers.all_samplers_map[label].options == sd_samplers.all_samplers_map[BASE_OF[label]].options
    for base in lib_cfgpp.BASE_SAMPLERS:
        assert sd_samplers.all_samplers_map[base.label].options == base.options
        assert names.index(base.label) < names.index(base.label + " CFG++")
    assert sd_samplers.all_samplers_map["DPM++ 2S a CFG++"].options.get("second_order") is True
    assert sd_samplers.all_samplers_map["Euler a CFG++"].options.get("uses_ensd") is True
    assert sd_samplers.all_samplers_map["DPM++ SDE CFG++"].options == {"scheduler": "karras", "second_order": True,
                                                                       "brownian_noise": True}
    script.register()  # "Reload UI" registers again: no duplicates
    assert all([s.name for s in sd_samplers.all_samplers].count(name) == 1 for name in OURS)


def test_api_lookup_by_name_alias_and_schedule_suffix():
    # the API does get_sampler_and_scheduler then looks the name up in all_samplers_map
    assert sd_samplers.get_sampler_and_scheduler("Euler a CFG++", None) == ("Euler a CFG++", "Automatic")
    assert sd_samplers.get_sampler_and_scheduler("DPM++ 2M CFG++ Karras", None) == ("DPM++ 2M CFG++", "Automatic")
    assert sd_samplers.get_sampler_and_scheduler("DPM++ 2M CFG++ Exponential", None) == ("DPM++ 2M CFG++", "Exponential")
    assert sd_samplers.get_sampler_and_scheduler("k_euler_a_cfg_pp", None)[0] == "Euler a CFG++"
    assert sd_samplers.samplers_map["k_dpmpp_2s_a_cfg_pp"] == "DPM++ 2S a CFG++"
    assert sd_samplers.all_samplers_map["k_euler_cfg_pp"].name == "Euler CFG++"


def test_registration_against_every_sampler_of_the_table(script):
    """Against the whole v1.10.1 table of the host double (k-diffusion, timestep family, LCM): no label or alias of
    ours equals a built-in name or alias; every built-in still resolves to itself by name and alias; our aliases
    are in both API maps; the cached name lookup is cleared when we register (a lookup cached before registration
    would answer the default sampler); ours are offered for img2img and the hires pass (v1.10.1 `set_samplers`,
    `visible_sampler_names`)."""
    builtin = [s for s in sd_samplers.all_samplers if s.name not in OURS]
    assert len(builtin) == 20 and {"Restart", "DPM adaptive", "LCM", "UniPC", "DDIM CFG++"} <= {s.name for s in builtin}
    builtin_names = {n.lower() for s in builtin for n in (s.name, *s.aliases)}
    ours = [n.lower() for d in (*lib_cfgpp.BASE_SAMPLERS, *lib_cfgpp.SAMPLERS) for n in (d.label, *d.aliases)]
    assert not builtin_names & set(ours)
    for data in builtin:
        assert sd_samplers.get_sampler_and_scheduler(data.name, None)[0] == data.name
        assert all(sd_samplers.samplers_map[a.lower()] == data.name for a in (data.name, *data.aliases))
        assert sd_samplers.all_samplers_map[data.name] is data
    for d in (*lib_cfgpp.BASE_SAMPLERS, *lib_cfgpp.SAMPLERS):
        for alias in d.aliases:
            assert sd_samplers.all_samplers_map[alias].name == d.label and sd_samplers.samplers_map[alias.lower()] == d.label
    assert all(label in [s.name for s in sd_samplers.samplers_for_img2img] for label in OURS)
    assert all(label in sd_samplers.visible_sampler_names() for label in OURS)  # the hires sampler dropdown's list

    # cache_clear: drop ours, look a label up (cached: the default sampler), register again, look up again
    for label in OURS:
        sd_samplers.all_samplers.remove(sd_samplers.all_samplers_map[label])
    for key in [k for k, v in sd_samplers.all_samplers_map.items() if v.name in OURS]:
        del sd_samplers.all_samplers_map[key]
    sd_samplers.set_samplers()
    sd_samplers.get_sampler_and_scheduler.cache_clear()
    assert sd_samplers.get_sampler_and_scheduler("Euler a CFG++", None)[0] == builtin[0].name
    script.register()
    assert sd_samplers.get_sampler_and_scheduler("Euler a CFG++", None)[0] == "Euler a CFG++"


def test_xyz_sampler_axis_accepts_cfgpp_samplers():
    xyz = xyz_grid_double.install()
    p = processing.StableDiffusionProcessingTxt2Img(prompt="x")
    xyz_grid_double.run_axis(xyz, p, "Sampler", ["DPM++ 2S a CFG++"])
    assert p.sampler_name == "DPM++ 2S a CFG++"
    xyz_grid_double.run_axis(xyz, p, "Hires sampler", ["Euler CFG++"])
    assert p.hr_sampler_name == "Euler CFG++"


@pytest.mark.parametrize("label", LABELS)
def test_seeded_and_deterministic_and_written_to_infotext(label):
    a = txt2img(sampler_name=label, seed=5, steps=4, batch_size=2)
    b = txt2img(sampler_name=label, seed=5, steps=4, batch_size=2)
    c = txt2img(sampler_name=label, seed=6, steps=4, batch_size=2)
    assert torch.equal(a.latents, b.latents) and not torch.equal(a.latents, c.latents)
    assert torch.isfinite(a.latents).all()
    assert "CFGpp lambda: 0.56" in a.infotexts[0] and "CFGpp convention: CFG/12.5" in a.infotexts[0]
    if label in NOISY:
        # ancestral noise comes from the per-image seeded stream, SDE noise from a Brownian tree per image seed:
        # image 2 of seed 5 == image 1 of seed 6
        single = txt2img(sampler_name=label, seed=6, steps=4)
        assert torch.allclose(a.latents[1], single.latents[0], atol=1e-5)


class Calls:
    """Records every CFG denoiser call: x and sigma of image 0's cond row, the text conds, the image cond rows."""

    def __init__(self):
        self.calls = []
        script_callbacks.on_cfg_denoiser(self.record)

    def record(self, params):
        self.calls.append({"x": params.x[:1].clone(), "sigma": params.sigma[:1].clone(), "cond": params.text_cond,
                           "uncond": params.text_uncond, "image_cond": params.image_cond.clone()})

    def close(self):
        script_callbacks.remove_callbacks_for_function(self.record)


def _first(text):
    return {k: v[:1] for k, v in text.items()} if isinstance(text, dict) else text[:1]


def _denoise(x, sigma, text, image_cond):
    """One prediction of the current model through the k-diffusion wrapper the host uses, built by hand."""
    text = _first(text)
    cond = {**text, "c_concat": [image_cond]} if isinstance(text, dict) else {"c_crossattn": [text], "c_concat": [image_cond]}
    with torch.no_grad():
        return make_denoiser(shared.sd_model)(x, sigma, cond=cond)


FAMILY_KIND = [("sd21", "txt2img"), ("sdxl", "txt2img"), ("sd15", "img2img")]


def _generate(kind, **fields):
    return (txt2img if kind == "txt2img" else img2img)(steps=3, **fields)


def assert_tells_apart(observed, expected, alternative):
    """`observed` matches `expected` (fp32 through the host) and the check can fail: `alternative` (what a wrong
    implementation would give) is more than 10x farther from `observed` than `expected` is. The tiny random models
    have a weak text effect, so fixed thresholds would not say whether a comparison can tell the two apart."""
    error = (observed - expected).abs().max().item()
    assert torch.allclose(observed, expected, atol=1e-5, rtol=1e-5), error
    assert (observed - alternative).abs().max().item() > 10 * error + 1e-6, (error, (observed - alternative).abs().max())


@pytest.mark.parametrize("family,kind", FAMILY_KIND)
@pytest.mark.parametrize("label", LABELS)
def test_lambda_zero_through_the_host_equals_the_base_sampler(family, kind, label):
    """v-prediction (SD 2.1), SDXL (dict conds, vector) and img2img: at CFG 0 (λ = 0) every CFG++ sampler equals its
    base sampler through the host (same seeded noise); CFG 12.5 (λ = 1) gives a result the comparison tells apart."""
    load_model(family)
    ours = _generate(kind, sampler_name=label, cfg_scale=0.0).latents
    base = _generate(kind, sampler_name=BASE_OF[label], cfg_scale=0.0).latents
    guided = _generate(kind, sampler_name=label, cfg_scale=12.5).latents
    assert torch.isfinite(guided).all()
    assert_tells_apart(ours, base, guided)


@pytest.mark.parametrize("family,kind", FAMILY_KIND)
def test_one_step_by_hand(family, kind):
    """The second model call of a generation sees exactly the x of a first step computed by hand from D_c and D_∅
    predicted at the first call's x and sigma. CFG 125 (λ = 10; the rules are linear in λ): the guidance term then
    stands well above fp32 noise on the tiny models, whose text effect is weak.
    Euler CFG++: x1 = D_λ + σ1·(x0 − D_∅)/σ0. DPM++ 2S a CFG++ at eta 0: its midpoint call is at σ_s = √(σ0σ1) on
    u = (σ_s/σ0)·x0 + (1 − σ_s/σ0)·D_∅(x0), then x1 = D_λ(u) + (σ1/σ0)·(x0 − D_∅(u))."""
    load_model(family)
    cfg = 125.0
    lam = cfg / 12.5

    def predictions(call, x, sigma):
        image_cond = call["image_cond"][:1]
        d_c = _denoise(x, sigma, call["cond"], image_cond)
        d_u = _denoise(x, sigma, call["uncond"], image_cond)
        return d_u + lam * (d_c - d_u), d_u

    recorder = Calls()
    _generate(kind, sampler_name="Euler CFG++", cfg_scale=cfg)
    first, second = recorder.calls[:2]
    x, sigma, sigma_next = first["x"], first["sigma"], second["sigma"]
    guided, uncond = predictions(first, x, sigma)
    expected = guided + sigma_next * (x - uncond) / sigma
    plain_euler = guided + sigma_next * (x - guided) / sigma  # re-noised along the guided direction instead
    assert_tells_apart(second["x"], expected, plain_euler)

    recorder.calls.clear()
    _generate(kind, sampler_name="DPM++ 2S a CFG++", cfg_scale=cfg, eta=0.0)
    recorder.close()
    first, middle, second = recorder.calls[:3]
    x, sigma, sigma_next = first["x"], first["sigma"], second["sigma"]
    sigma_s = (sigma * sigma_next).sqrt()
    _, uncond = predictions(first, x, sigma)
    u = sigma_s / sigma * x + (1 - sigma_s / sigma) * uncond
    assert torch.allclose(middle["sigma"], sigma_s, rtol=1e-5)
    assert torch.allclose(middle["x"], u, atol=1e-5, rtol=1e-5), (middle["x"] - u).abs().max()
    guided_2, uncond_2 = predictions(first, u, sigma_s)
    expected = guided_2 + sigma_next / sigma * (x - uncond_2)
    assert_tells_apart(second["x"], expected, guided_2 + sigma_next / sigma * (x - guided_2))


def test_lambda_zero_equals_base_sampler_unconditional():
    """CFG 0 -> λ = 0: the guided prediction is D_∅, and Euler CFG++ must equal plain Euler at CFG 0."""
    ours = txt2img(sampler_name="Euler CFG++", cfg_scale=0.0, steps=4).latents
    base = txt2img(sampler_name="Euler", cfg_scale=0.0, steps=4).latents
    assert torch.allclose(ours, base, atol=1e-5)


def test_convention_setting_changes_lambda_and_paste_keeps_it(script):
    default = txt2img(sampler_name="Euler CFG++", cfg_scale=7.0, steps=3)
    shared.opts.data["cfgpp_guidance_convention"] = "CFG=lambda"
    as_lambda = txt2img(sampler_name="Euler CFG++", cfg_scale=0.56, steps=3)
    assert torch.allclose(default.latents, as_lambda.latents, atol=1e-5)
    assert "CFGpp convention: CFG=lambda" in as_lambda.infotexts[0]

    # an image made under CFG/12.5 pasted while the setting is CFG=lambda: CFG scale becomes 0.56
    class Number:
        value = 7.0
    pasted = infotext_utils.paste(default.infotexts[0], [(Number(), "CFG scale"), (type("S", (), {"value": ""})(), "Sampler")])
    assert pasted == [pytest.approx(0.56), "Euler CFG++"]


def test_hires_pass_lambda_zero_equals_the_base_samplers():
    """A CFG++ first pass and a CFG++ hires pass (its own sampler choice): at CFG 0 equal to the base samplers."""
    fields = dict(enable_hr=True, hr_scale=1.5, steps=3, cfg_scale=0.0)
    ours = txt2img(sampler_name="Euler CFG++", hr_sampler_name="DPM++ 2S a CFG++", **fields).latents
    base = txt2img(sampler_name="Euler", hr_sampler_name="DPM++ 2S a", **fields).latents
    guided = txt2img(sampler_name="Euler CFG++", hr_sampler_name="DPM++ 2S a CFG++", **{**fields, "cfg_scale": 12.5}).latents
    assert ours.shape[-1] == 12
    assert_tells_apart(ours, base, guided)


def _kept_region_trajectory(label, mask):
    """The kept region of image 0's x at every denoiser call of an inpainting img2img."""
    recorder = Calls()
    holder = {}
    img2img(sampler_name=label, image_mask=mask, steps=4, denoising_strength=0.8, cfg_scale=5.0,
            p_hook=lambda p: holder.setdefault("p", p))
    recorder.close()
    kept = holder["p"].mask.bool()
    return [call["x"][0][kept] for call in recorder.calls]


@pytest.mark.parametrize("label", LABELS)
def test_inpainting_kept_region_follows_the_base_sampler_inside_sampling(script, label):
    """Inside sampling (the host's final blend overwrites the kept region anyway, so the final latent proves
    nothing), the kept region of every call's x equals the base sampler's: there D_λ = D_∅ = init because the uncond
    prediction is blended like the guided one. The check can fail: without that blend the region leaves the base
    trajectory."""
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    base = _kept_region_trajectory(BASE_OF[label], mask)
    ours = _kept_region_trajectory(label, mask)
    assert len(ours) == len(base) >= 4
    for x_base, x_ours in zip(base, ours):
        assert torch.allclose(x_base, x_ours, atol=1e-5), (x_base - x_ours).abs().max()
    if label != "Euler CFG++":
        return
    blend = script._blend_like_host
    try:
        script._blend_like_host = lambda model, denoised_uncond, sigma: denoised_uncond
        script.register()
        unblended = _kept_region_trajectory(label, mask)
    finally:
        script._blend_like_host = blend
        script.register()
    assert max((a - b).abs().max().item() for a, b in zip(base, unblended)) > 1e-3


def test_edit_model_one_step_by_hand():
    """An 8-channel InstructPix2Pix-like model (cond_stage_key 'edit', conditioning_key 'hybrid': the edit image is
    concatenated to x in the UNet). The host runs the 3-way batch [cond+img, uncond+img, uncond+zeros]; CFG++ must
    re-noise along the fully unconditional chunk: x1 = D_λ + σ1·(x0 − D(uncond, zeros))/σ0 with
    D_λ = D_∅ + λ(D_c − D_img) + s_img(D_img − D_∅), λ = 7.5/12.5, s_img = 1.5 (v1.10.1 combine_denoised_for_edit_model)."""
    model = load_model("sd15", in_channels=8, cond_stage_key="edit")
    assert model.model.conditioning_key == "hybrid" and model.model.diffusion_model.in_channels == 8
    recorder = Calls()
    holder = {}
    img2img(sampler_name="Euler CFG++", image_cfg_scale=1.5, cfg_scale=7.5, steps=3, denoising_strength=1.0,
            p_hook=lambda p: holder.setdefault("p", p))
    recorder.close()
    first, second = recorder.calls[:2]
    image = holder["p"].image_conditioning
    assert first["image_cond"].shape[0] == 3 and not first["image_cond"][2].any()
    x, sigma = first["x"], first["sigma"]
    d_cond = _denoise(x, sigma, first["cond"], image)
    d_img = _denoise(x, sigma, first["uncond"], image)
    d_uncond = _denoise(x, sigma, first["uncond"], torch.zeros_like(image))
    assert (d_img - d_uncond).abs().max() > 1e-3, "the edit image reaches the UNet"
    guided = d_uncond + 7.5 / 12.5 * (d_cond - d_img) + 1.5 * (d_img - d_uncond)
    expected = guided + second["sigma"] * (x - d_uncond) / sigma
    wrong = guided + second["sigma"] * (x - d_img) / sigma  # the image-conditioned chunk taken as "uncond"
    assert_tells_apart(second["x"], expected, wrong)


@pytest.mark.parametrize("label", LABELS)
def test_ngms_skipped_uncond_is_well_defined(label):
    result = txt2img(sampler_name=label, steps=4, s_min_uncond=100.0)
    assert torch.isfinite(result.latents).all() and result.extra_generation_params["NGMS"] == 100.0
    shared.opts.skip_early_cond = 0.5
    result = txt2img(sampler_name=label, steps=4)
    assert torch.isfinite(result.latents).all() and "Skip Early CFG" in result.extra_generation_params


def test_soft_inpainting_hook_sees_the_uncond_blend_too():
    """A script's on_mask_blend (soft inpainting) runs for the guided prediction inside the denoiser; CFG++
    passes D_∅ through the same hook, so each denoiser step blends twice with a denoiser and sigma."""
    from modules import scripts

    class SoftBlend(scripts.Script):
        def __init__(self):
            self.calls = []

        def title(self):
            return "soft"

        def show(self, is_img2img):
            return scripts.AlwaysVisible

        def on_mask_blend(self, p, mba, *args):
            self.calls.append(mba.denoiser is not None)
            mba.blended_latent = 0.5 * (mba.blended_latent + mba.current_latent)

    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    soft = SoftBlend()
    img2img([soft], [], arg_counts=[0], sampler_name="Euler CFG++", image_mask=mask, steps=4, denoising_strength=0.8)
    # strength 0.8 of 4 steps runs t_enc + 1 = 4 denoiser calls: 2 blends each (guided + uncond), then the
    # final blend of the processing object, without a denoiser
    assert soft.calls == [True] * 8 + [False]


def test_s_noise_setting_reaches_ancestral_cfgpp_samplers():
    from modules import sd_samplers_kdiffusion
    fn = sd_samplers.all_samplers_map["DPM++ 2S a CFG++"].constructor(shared.sd_model).func
    assert sd_samplers_kdiffusion.sampler_extra_params[fn] == ["s_noise"]
    a = txt2img(sampler_name="DPM++ 2S a CFG++", steps=3, s_noise=1.0).latents
    b = txt2img(sampler_name="DPM++ 2S a CFG++", steps=3, s_noise=0.0).latents
    assert not torch.equal(a, b)


@pytest.mark.parametrize("family", ["sd15", "sd21"])
def test_euler_cfgpp_on_ddim_timesteps_equals_the_hosts_ddim_cfgpp(family):
    """Euler CFG++ run on the DDIM timestep schedule equals the WebUI's own DDIM CFG++ (the host double's
    v1.10.1 `ddim_cfgpp`, timestep path, eps space), eta 0, fp32, both through the host's CFG denoisers.

    Sigma <-> timestep: σ_t = √((1−ᾱ_t)/ᾱ_t) and x_k = x_VP/√ᾱ_t = x_VP·√(1+σ_t²). DDIM CFG++ with N timesteps
    makes N−1 model calls, t_{N−1} .. t_1, and lands on ᾱ(t_0); Euler CFG++ over σ(t_{N−1}) .. σ(t_0) is the same
    recursion, since x_{i+1} = D_λ + σ_{i+1}(x_i − D_∅)/σ_i is DDIM's √ᾱ' x̂0 + √(1−ᾱ') ε_∅ divided by √ᾱ'."""
    import k_diffusion.sampling
    from modules import rng, sd_samplers_timesteps_impl

    model = load_model(family)
    p = processing.StableDiffusionProcessingTxt2Img(prompt="a cat", negative_prompt="blurry", cfg_scale=7.5)
    p.setup_prompts()
    p.prompts, p.negative_prompts, p.seeds = p.all_prompts, p.all_negative_prompts, [1]
    p.setup_conds()
    p.rng = rng.ImageRNG((4, 8, 8), [1])
    extra_args = {"cond": p.c, "uncond": p.uc, "cond_scale": 7.5, "s_min_uncond": 0.0, "image_cond": torch.zeros(1, 5, 1, 1)}

    ddim = sd_samplers.create_sampler("DDIM CFG++", model)
    euler = sd_samplers.create_sampler("Euler CFG++", model)
    for sampler in (ddim, euler):
        sampler.initialize(p)
    k_diffusion.sampling.torch = torch  # eta 0: DDIM draws noise it multiplies by 0; keep it unseeded here

    steps = 10
    timesteps = ddim.get_timesteps(p, steps)
    x_vp = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        reference = sd_samplers_timesteps_impl.ddim_cfgpp(ddim.model_wrap_cfg, x_vp, timesteps, extra_args=extra_args)
        sigmas = euler.model_wrap.sigmas[timesteps.flip(0)]
        ours = euler.func(euler.model_wrap_cfg, x_vp * (sigmas[0] ** 2 + 1).sqrt(), sigmas, extra_args=extra_args, disable=True)
    ours_vp = ours / (sigmas[-1] ** 2 + 1).sqrt()

    assert reference.abs().max() > 0.5, "a real trajectory"
    assert torch.allclose(ours_vp, reference, atol=1e-5, rtol=1e-5), (ours_vp - reference).abs().max()
    wrong = euler.func(euler.model_wrap_cfg, x_vp * (sigmas[0] ** 2 + 1).sqrt(), sigmas, extra_args={**extra_args, "cond_scale": 9.0}, disable=True)
    assert not torch.allclose(wrong / (sigmas[-1] ** 2 + 1).sqrt(), reference, atol=1e-5, rtol=1e-5), "the tolerance can tell λ 0.6 from 0.72"


@pytest.mark.parametrize("schedule", [s.label for s in __import__("modules.sd_schedulers").sd_schedulers.schedulers])
def test_every_schedule_type_runs(schedule):
    result = txt2img(sampler_name="DPM++ 2M CFG++", scheduler=schedule, steps=4)
    assert torch.isfinite(result.latents).all()
    if schedule not in ("Automatic", "Karras"):  # Karras is DPM++ 2M's automatic choice
        assert result.extra_generation_params.get("Schedule type") == schedule
