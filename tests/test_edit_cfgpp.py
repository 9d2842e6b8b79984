"""CFG++ samplers on SDXL edit models (the rule: lib_concat/edit_guidance.py). Through the host double on an 8-channel
SDXL-layout model (SDXL InstructPix2Pix and CosXL Edit with its EDM denoiser), txt2img with the accordion's image:
λ = 0 equals the base sampler; one step checked by hand from the 3-way batch's rows; with D_∅ replaced by the guided
output the step is the base sampler on plain edit-CFG; seeds reproduce."""
import numpy as np
import pytest
import torch
from PIL import Image

from modules import script_callbacks
from support.edit_models import COSXL_KEYS, edit_model, load_checkpoint
from support.generation import reset_host, txt2img
from support.iclight_webui import b64
from support.scripts_loader import load_script, unload_callbacks


@pytest.fixture(scope="module")
def scripts_loaded():
    cfgpp = load_script("cfgpp_samplers.py")
    edit = load_script("edit_models.py")
    yield cfgpp, edit
    unload_callbacks("cfgpp_samplers.py")
    unload_callbacks("edit_models.py")
    edit.glue_edit.uninstall()


IMAGE = b64(Image.fromarray(np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)))


class Rows:
    """Per CFG-denoiser call: x (first rows), sigma, the model output of the 3-way batch, the guided output."""

    def __init__(self):
        self.calls = []
        script_callbacks.on_cfg_denoiser(self.on_denoiser)
        script_callbacks.on_cfg_denoised(self.on_denoised)
        script_callbacks.on_cfg_after_cfg(self.on_after)

    def on_denoiser(self, params):
        b = params.x.shape[0] // 3
        self.calls.append({"x": params.x[:b].clone(), "sigma": params.sigma[:b].clone()})

    def on_denoised(self, params):
        self.calls[-1]["rows"] = params.x.clone().chunk(3)

    def on_after(self, params):
        self.calls[-1]["guided"] = params.x.clone()

    def close(self):
        for f in (self.on_denoiser, self.on_denoised, self.on_after):
            script_callbacks.remove_callbacks_for_function(f)


def generate(edit, cosxl, sampler, cfg, image_cfg, seed=1, record=False, **fields):
    reset_host()
    model = edit_model("sdxl")
    load_checkpoint(model, "cosxl" if cosxl else "sdxl_ip2p", **(COSXL_KEYS if cosxl else {}))
    rows = Rows() if record else None
    try:
        result = txt2img([edit.EditModelScript()], [True, IMAGE, image_cfg], arg_counts=[3], steps=3, width=64,
                         height=64, sampler_name=sampler, cfg_scale=cfg, seed=seed, **fields)
    finally:
        if rows is not None:
            rows.close()
    return result.latents, rows


@pytest.mark.parametrize("cosxl,sampler", [(False, "Euler"), (True, "Euler a")], ids=["sdxl_ip2p-Euler",
                                                                                     "cosxl_edit-Euler_a"])
def test_lambda_zero_equals_the_base_sampler(scripts_loaded, cosxl, sampler):
    _, edit = scripts_loaded
    base, _ = generate(edit, cosxl, sampler, 0.0, 0.0)
    ours, _ = generate(edit, cosxl, sampler + " CFG++", 0.0, 0.0)
    guided, _ = generate(edit, cosxl, sampler + " CFG++", 7.5, 1.5)
    tolerance = 1e-5 * float(base.abs().max())
    torch.testing.assert_close(ours, base, atol=tolerance, rtol=0)
    assert (guided - base).abs().max() > 100 * tolerance  # and the comparison can tell guidance apart


@pytest.mark.parametrize("cosxl", [False, True], ids=["sdxl_ip2p", "cosxl_edit"])
def test_one_step_by_hand(scripts_loaded, cosxl):
    """x1 = D_λ + σ1·(x0 − D_∅)/σ0, D_λ = D_∅ + λ(D_c − D_i) + s_i(D_i − D_∅), λ = 7.5/12.5, s_i = 1.5, with D_c, D_i,
    D_∅ the rows the host's model call gave (not recomputed by the code under test)."""
    _, edit = scripts_loaded
    _, rec = generate(edit, cosxl, "Euler CFG++", 7.5, 1.5, record=True)
    first, second = rec.calls[:2]
    d_c, d_i, d_u = first["rows"]
    assert (d_i - d_u).abs().max() > 1e-3  # the image reaches the UNet
    x0, s0, s1 = first["x"], first["sigma"].view(-1, 1, 1, 1), second["sigma"].view(-1, 1, 1, 1)
    guided = d_u + 7.5 / 12.5 * (d_c - d_i) + 1.5 * (d_i - d_u)
    torch.testing.assert_close(first["guided"], guided, atol=1e-5, rtol=1e-5)
    expected = guided + s1 * (x0 - d_u) / s0
    wrong = guided + s1 * (x0 - d_i) / s0  # re-noised along the image-conditioned row
    err, margin = (second["x"] - expected).abs().max(), (wrong - expected).abs().max()
    assert err <= 1e-4 * expected.abs().max() and margin > 100 * err


def test_with_the_guided_output_as_uncond_it_is_plain_edit_cfg(scripts_loaded):
    """Replace D_∅ by D_λ (the script's uncond hook returns the guided output of the same call): Euler CFG++ at
    CFG 7.5 (λ 0.6) is then Euler on the WebUI's edit guidance at CFG 0.6, same image CFG, at every step (the x of
    each denoiser call; the last step lands on D either way)."""
    cfgpp, edit = scripts_loaded
    holder = {}

    def keep(params):
        holder["guided"] = params.x.clone()

    script_callbacks.on_cfg_after_cfg(keep)
    blend = cfgpp._blend_like_host
    try:
        cfgpp._blend_like_host = lambda model, uncond, sigma: holder["guided"]
        cfgpp.register()
        _, swapped = generate(edit, False, "Euler CFG++", 7.5, 1.5, record=True)
    finally:
        cfgpp._blend_like_host = blend
        cfgpp.register()
        script_callbacks.remove_callbacks_for_function(keep)
    _, plain = generate(edit, False, "Euler", 7.5 / 12.5, 1.5, record=True)
    _, cfgpp_run = generate(edit, False, "Euler CFG++", 7.5, 1.5, record=True)
    for step in (1, 2):
        want = plain.calls[step]["x"]
        tolerance = 1e-5 * float(want.abs().max())
        torch.testing.assert_close(swapped.calls[step]["x"], want, atol=tolerance, rtol=0)
        assert (cfgpp_run.calls[step]["x"] - want).abs().max() > 100 * tolerance


def test_seeds_reproduce(scripts_loaded):
    _, edit = scripts_loaded
    a, _ = generate(edit, True, "Euler a CFG++", 7.5, 1.5, seed=3)
    b, _ = generate(edit, True, "Euler a CFG++", 7.5, 1.5, seed=3)
    c, _ = generate(edit, True, "Euler a CFG++", 7.5, 1.5, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
