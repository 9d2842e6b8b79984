"""CFG++ samplers through the WebUI host double: registration, name/alias/X/Y/Z/infotext, and generations
(eps and v models, SDXL layout, img2img, inpainting blend, edit model, NGMS, hires)."""
import pytest
import torch
from PIL import Image

from modules import infotext_utils, processing, sd_samplers, shared

import xyz_grid_double
from support.generation import img2img, load_model, reset_host, txt2img
from support.scripts_loader import load_script, unload_callbacks

LABELS = ["Euler CFG++", "Euler a CFG++", "DPM++ 2M CFG++", "DPM++ 2S a CFG++"]


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
    dpm = sd_samplers.all_samplers_map["DPM++ 2M CFG++"]
    assert dpm.options == sd_samplers.all_samplers_map["DPM++ 2M"].options
    assert sd_samplers.all_samplers_map["DPM++ 2S a CFG++"].options.get("second_order") is True
    assert sd_samplers.all_samplers_map["Euler a CFG++"].options.get("uses_ensd") is True
    script.register()  # "Reload UI" registers again: no duplicates
    assert [s.name for s in sd_samplers.all_samplers].count("Euler CFG++") == 1


def test_api_lookup_by_name_alias_and_schedule_suffix():
    # the API does get_sampler_and_scheduler then looks the name up in all_samplers_map
    assert sd_samplers.get_sampler_and_scheduler("Euler a CFG++", None) == ("Euler a CFG++", "Automatic")
    assert sd_samplers.get_sampler_and_scheduler("DPM++ 2M CFG++ Karras", None) == ("DPM++ 2M CFG++", "Automatic")
    assert sd_samplers.get_sampler_and_scheduler("DPM++ 2M CFG++ Exponential", None) == ("DPM++ 2M CFG++", "Exponential")
    assert sd_samplers.get_sampler_and_scheduler("k_euler_a_cfg_pp", None)[0] == "Euler a CFG++"
    assert sd_samplers.samplers_map["k_dpmpp_2s_a_cfg_pp"] == "DPM++ 2S a CFG++"
    assert sd_samplers.all_samplers_map["k_euler_cfg_pp"].name == "Euler CFG++"


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
    if " a " in label + " ":
        # ancestral noise comes from the per-image seeded stream: image 2 of seed 5 == image 1 of seed 6
        single = txt2img(sampler_name=label, seed=6, steps=4)
        assert torch.allclose(a.latents[1], single.latents[0], atol=1e-5)


@pytest.mark.parametrize("family", ["sd21", "sdxl"])
@pytest.mark.parametrize("label", ["Euler CFG++", "DPM++ 2S a CFG++"])
def test_v_prediction_and_sdxl_layout_run(family, label):
    load_model(family)
    result = txt2img(sampler_name=label, steps=3)
    assert torch.isfinite(result.latents).all()


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


def test_img2img_and_hires_pass():
    result = img2img(sampler_name="DPM++ 2M CFG++", steps=5, denoising_strength=0.6)
    assert torch.isfinite(result.latents).all()
    result = txt2img(sampler_name="Euler CFG++", hr_sampler_name="DPM++ 2S a CFG++", enable_hr=True, hr_scale=1.5, steps=3)
    assert result.latents.shape[-1] == 12 and torch.isfinite(result.latents).all()


@pytest.mark.parametrize("label", LABELS)
def test_inpainting_keeps_the_masked_out_region(label):
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    holder = {}
    result = img2img(sampler_name=label, image_mask=mask, steps=4, denoising_strength=0.8,
                     p_hook=lambda p: holder.setdefault("p", p))
    p = holder["p"]
    kept = p.mask.bool()
    assert torch.equal(result.latents[0][kept], p.init_latent[0][kept])


def test_inpainting_blends_the_uncond_prediction_like_the_guided_one():
    """Inside sampling, the preserved region of every step's x must follow the base sampler's blend: with the
    uncond prediction blended as the guided one, x stays equal to init + σ·(x − init)/σ there, i.e. the kept
    region of x after each step is the init latent plus the carried noise (same as plain Euler's)."""
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    xs = {}
    for label in ("Euler", "Euler CFG++"):
        captured = []
        from modules import script_callbacks
        script_callbacks.on_cfg_denoiser(lambda params: captured.append(params.x[:1].clone()))
        holder = {}
        img2img(sampler_name=label, image_mask=mask, steps=4, denoising_strength=0.8, cfg_scale=5.0,
                p_hook=lambda p: holder.setdefault("p", p))
        script_callbacks.clear_callbacks()
        xs[label] = (captured, holder["p"].mask.bool())
    (base, kept), (ours, _) = xs["Euler"], xs["Euler CFG++"]
    for x_base, x_ours in zip(base, ours):
        assert torch.allclose(x_base[0][kept], x_ours[0][kept], atol=1e-5)


def test_edit_model_uses_the_fully_unconditional_chunk():
    model = shared.sd_model
    model.cond_stage_key = "edit"
    result = img2img(sampler_name="Euler CFG++", image_cfg_scale=1.5, steps=3, denoising_strength=1.0)
    assert torch.isfinite(result.latents).all()


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
    from modules import rng, sd_samplers_timesteps

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
        reference = sd_samplers_timesteps.ddim_cfgpp(ddim.model_wrap_cfg, x_vp, timesteps, extra_args=extra_args)
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
