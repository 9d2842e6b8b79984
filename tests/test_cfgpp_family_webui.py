"""The new CFG++ samplers (issue 12) and the base samplers the WebUI lacks, through the WebUI host double: X/Y/Z cells,
paste under both guidance conventions, the hires pass, img2img, seeds per image for the SDE twins as for their
bases (also without batch determinism), eta / s_noise settings. Registration, aliases, lambda 0 == base through the
host (v-prediction, SDXL, img2img) and the per-image seeds of every noisy sampler are in test_cfgpp_webui.py,
parametrized over the whole registry."""
import pytest
import torch

from modules import infotext_utils, processing, shared

import lib_cfgpp
import xyz_grid_double
from support.generation import DEFAULTS, img2img, load_model, reset_host, txt2img
from support.scripts_loader import load_script, unload_callbacks

NEW = ["DPM++ SDE CFG++", "DPM++ 2M SDE CFG++", "DPM++ 3M SDE CFG++", "Heun CFG++", "DPM2 CFG++", "RES Multistep CFG++",
       "RES Multistep Ancestral CFG++", "Gradient Estimation CFG++"]
BASES = [d.label for d in lib_cfgpp.BASE_SAMPLERS]
SDE = [d.label for d in lib_cfgpp.SAMPLERS if d.brownian]
BASE_OF = {d.label: d.base_label for d in lib_cfgpp.SAMPLERS}


@pytest.fixture(scope="module", autouse=True)
def script():
    module = load_script("cfgpp_samplers.py")
    yield module
    unload_callbacks("cfgpp_samplers.py")


@pytest.fixture(autouse=True)
def _host():
    reset_host()
    load_model("sd15")
    yield
    reset_host()


def assert_tells_apart(observed, expected, alternative):
    error = (observed - expected).abs().max().item()
    assert torch.allclose(observed, expected, atol=1e-5, rtol=1e-5), error
    assert (observed - alternative).abs().max().item() > 10 * error + 1e-6


def test_every_new_name_is_an_xyz_cell_equal_to_its_run_alone():
    """A Sampler axis over every new name (bases and twins): each cell ran its sampler (infotext "Sampler",
    "CFGpp lambda" only for CFG++ ones) and its latents equal the same settings run alone; the Hires sampler axis
    takes them. (Full infotexts are not compared: v1.10.1's plot shares extra_generation_params between cells, so a
    "Schedule type" the WebUI writes for a sampler with its own default schedule shows in later cells too.)"""
    xyz = xyz_grid_double.install()
    names = BASES + NEW
    make_p = lambda: processing.StableDiffusionProcessingTxt2Img(**{**DEFAULTS, "steps": 3})  # noqa: E731
    cells = xyz_grid_double.run_grid(xyz, make_p(), x=("Sampler", names))
    assert [c.x for c in cells] == names and all(c.error is None for c in cells), [c.error for c in cells]
    for cell in cells:
        text = cell.processed.infotexts[0]
        assert f"Sampler: {cell.x}," in text and ("CFGpp lambda: 0.56" in text) == cell.x.endswith(" CFG++"), text
        alone = txt2img(sampler_name=cell.x, steps=3)
        assert torch.equal(cell.processed.latents, alone.latents), cell.x
    p = make_p()
    xyz_grid_double.run_axis(xyz, p, "Hires sampler", names)
    assert p.hr_sampler_name == names[0]
    with pytest.raises(RuntimeError, match="Unknown sampler"):
        xyz_grid_double.run_axis(xyz, make_p(), "Sampler", ["RES Multistep CFG+"])


@pytest.mark.parametrize("label", NEW)
def test_paste_keeps_lambda_under_both_conventions(label):
    """Made under CFG/12.5 at CFG 7 and pasted under CFG=lambda: CFG 0.56 (same λ); made under CFG=lambda at 0.56
    (the same image: λ is what samples) and pasted under CFG/12.5: CFG 7. The sampler name pastes as is."""
    webui = txt2img(sampler_name=label, cfg_scale=7.0, steps=3)
    shared.opts.data["cfgpp_guidance_convention"] = "CFG=lambda"
    comfy = txt2img(sampler_name=label, cfg_scale=0.56, steps=3)
    assert torch.allclose(webui.latents, comfy.latents, atol=1e-5)
    assert "CFGpp convention: CFG=lambda" in comfy.infotexts[0] and "CFGpp lambda: 0.56" in comfy.infotexts[0]

    class Field:
        def __init__(self, value):
            self.value = value
    fields = lambda: [(Field(7.0), "CFG scale"), (Field(""), "Sampler")]  # noqa: E731
    assert infotext_utils.paste(webui.infotexts[0], fields()) == [pytest.approx(0.56), label]
    shared.opts.data["cfgpp_guidance_convention"] = "CFG/12.5"
    assert infotext_utils.paste(comfy.infotexts[0], fields()) == [pytest.approx(7.0), label]


@pytest.mark.parametrize("label", NEW)
def test_hires_pass_and_img2img(label):
    """Both passes of a hires generation with the new sampler: at CFG 0 equal to the base sampler in both passes, at
    CFG 12.5 told apart; img2img likewise (the WebUI walks the schedule's tail; SDE: the tree on the full one)."""
    fields = dict(enable_hr=True, hr_scale=1.5, steps=3, seed=3)
    ours = txt2img(sampler_name=label, hr_sampler_name=label, cfg_scale=0.0, **fields)
    base = txt2img(sampler_name=BASE_OF[label], hr_sampler_name=BASE_OF[label], cfg_scale=0.0, **fields)
    guided = txt2img(sampler_name=label, hr_sampler_name=label, cfg_scale=12.5, **fields)
    assert ours.latents.shape[-1] == 12
    assert_tells_apart(ours.latents, base.latents, guided.latents)

    ours = img2img(sampler_name=label, cfg_scale=0.0, steps=4, denoising_strength=0.5).latents
    base = img2img(sampler_name=BASE_OF[label], cfg_scale=0.0, steps=4, denoising_strength=0.5).latents
    assert_tells_apart(ours, base, img2img(sampler_name=label, cfg_scale=12.5, steps=4, denoising_strength=0.5).latents)


@pytest.mark.parametrize("label", SDE)
def test_sde_twins_reproduce_per_image_as_their_bases(label):
    """The WebUI's Brownian tree from the image seeds reaches the twin as it reaches the base: image 2 of a seed-5
    batch equals seed 6 alone, for the twin and for its base; with "no DPM++ SDE batch determinism" both build a
    tree from torch's global RNG, so the same global seed gives the same image, and the twin at CFG 0 is the base."""
    for name in (label, BASE_OF[label]):
        batch = txt2img(sampler_name=name, seed=5, batch_size=2, steps=4).latents
        alone = txt2img(sampler_name=name, seed=6, steps=4).latents
        assert torch.allclose(batch[1], alone[0], atol=1e-5), name
        assert not torch.allclose(batch[0], alone[0], atol=1e-3), name
    shared.opts.no_dpmpp_sde_batch_determinism = True
    runs = {}
    for name, global_seed in ((label, 1), (label, 1), (BASE_OF[label], 1), (label, 2)):
        torch.manual_seed(global_seed)
        runs.setdefault(name, []).append(txt2img(sampler_name=name, seed=5, steps=4, cfg_scale=0.0).latents)
    (first, again, other), (base,) = runs[label], runs[BASE_OF[label]]
    assert torch.equal(first, again) and torch.allclose(first, base, atol=1e-5)
    assert not torch.allclose(first, other, atol=1e-3)


@pytest.mark.parametrize("label", SDE + ["RES Multistep Ancestral CFG++"])
def test_eta_and_s_noise_settings_reach_the_noisy_twins(label):
    """p.eta and the s_noise setting reach the twin as the base (infotext "Eta", "Sigma noise"): at CFG 0 the twin
    equals the base with the same settings, and the settings change the result."""
    shared.opts.s_noise = 0.7
    ours = txt2img(sampler_name=label, eta=0.5, cfg_scale=0.0, steps=4)
    base = txt2img(sampler_name=BASE_OF[label], eta=0.5, cfg_scale=0.0, steps=4)
    assert torch.allclose(ours.latents, base.latents, atol=1e-5)
    assert ours.extra_generation_params.get("Eta") == 0.5 and ours.extra_generation_params.get("Sigma noise") == 0.7
    shared.opts.s_noise = 1.0
    default = txt2img(sampler_name=label, cfg_scale=0.0, steps=4).latents
    assert (default - ours.latents).abs().max() > 1e-3


def test_base_samplers_through_the_host():
    """RES Multistep / RES Multistep Ancestral / Gradient Estimation are plain WebUI samplers: no CFG++ infotext, the
    ancestral one seeded per image and equal to RES Multistep at eta 0, all usable in img2img and hires."""
    for name in BASES:
        result = txt2img(sampler_name=name, steps=4, enable_hr=True, hr_scale=1.5, hr_sampler_name=name)
        assert torch.isfinite(result.latents).all() and "CFGpp" not in result.infotexts[0]
        assert torch.isfinite(img2img(sampler_name=name, steps=4).latents).all()
    batch = txt2img(sampler_name="RES Multistep Ancestral", seed=5, batch_size=2, steps=4).latents
    alone = txt2img(sampler_name="RES Multistep Ancestral", seed=6, steps=4).latents
    assert torch.allclose(batch[1], alone[0], atol=1e-5)
    assert torch.allclose(txt2img(sampler_name="RES Multistep Ancestral", eta=0.0, steps=4).latents,
                          txt2img(sampler_name="RES Multistep", steps=4).latents, atol=1e-5)
    assert not torch.allclose(txt2img(sampler_name="RES Multistep Ancestral", steps=4).latents,
                              txt2img(sampler_name="RES Multistep", steps=4).latents, atol=1e-3)


def test_api_names_resolve_for_every_new_sampler():
    """The API's lookup (get_sampler_and_scheduler, then all_samplers_map) by label, by every alias, and with a
    schedule-type suffix."""
    from modules import sd_samplers
    for definition in (*lib_cfgpp.BASE_SAMPLERS, *(d for d in lib_cfgpp.SAMPLERS if d.label in NEW)):
        for name in (definition.label, *definition.aliases):
            assert sd_samplers.get_sampler_and_scheduler(name, None)[0] == definition.label, name
        assert sd_samplers.get_sampler_and_scheduler(definition.label + " Uniform", None)[0] == definition.label
        assert sd_samplers.all_samplers_map[definition.label].name == definition.label
