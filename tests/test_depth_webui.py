"""Depth through the WebUI host double on a tiny SD 2 depth model (5-channel UNet, eps): the map reaches the UNet
as the WebUI's normalisation of it, in txt2img and img2img, per image (batch, AND rows, NGMS), resized again in the
hires pass; one denoiser step equals diffusers' StableDiffusionDepth2ImgPipeline on converted weights given the
same depth_map; 'estimate' keeps the WebUI's MiDaS path; disabled is inert; bad inputs stop before sampling."""
import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from modules import rng, scripts, shared
from modules.api.api import Api

from support.depth_models import load_depth_model, webui_depth_normalisation
from support.generation import img2img, load_model, reset_host, txt2img
from support.iclight_webui import UNetSpy
from support.scripts_loader import load_script, unload_callbacks

SCRIPT_FILE = "depth.py"


@pytest.fixture(scope="module")
def script():
    module = load_script(SCRIPT_FILE)
    yield module
    module.disarm()
    unload_callbacks(SCRIPT_FILE)


@pytest.fixture(autouse=True)
def host(script):
    reset_host()
    load_depth_model()
    yield
    assert not scripts.reported_errors, scripts.reported_errors
    reset_host()


def depth_values(height=40, width=56, seed=0) -> np.ndarray:
    rng_ = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    field = np.sin(x / 6.0 + rng_.random() * 3) + np.cos(y / 4.0 + rng_.random() * 3)
    return np.round((field - field.min()) / (field.max() - field.min()) * 65535)


def png16(values) -> str:
    buffer = io.BytesIO()
    Image.fromarray(values.astype(np.uint16)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def expected(values, hw, invert=False):
    out = webui_depth_normalisation(torch.from_numpy(values).float()[None, None], hw)
    return -out if invert else out


def generate(script, values=None, mode="txt2img", **fields):
    args = [values] if values is not None else []
    run = txt2img if mode == "txt2img" else img2img
    fields.setdefault("steps", 2)
    fields.setdefault("width", 64)
    fields.setdefault("height", 64)
    return run(script_list=[script.DepthScript()], script_args=args, arg_counts=[len(SCRIPT_ARGS)], **fields)


SCRIPT_ARGS = ("enabled", "source", "depth_map", "invert")


def on(maps, **changes):
    return {"enabled": True, "depth_map": [png16(m) for m in maps] if isinstance(maps, list) else png16(maps),
            **changes}


# --- 1. parity with diffusers ---------------------------------------------------------------------------------
def tiny_diffusers_vae():
    from diffusers import AutoencoderKL
    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=(32, 32, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=1).eval()


def test_one_step_equals_diffusers_depth2img_pipeline_given_the_same_depth_map(script, monkeypatch):
    from diffusers import EulerDiscreteScheduler, StableDiffusionDepth2ImgPipeline
    from support.iclight_fixtures import diffusers_twin
    model = shared.sd_model
    maps = [depth_values(seed=1), depth_values(seed=2)]
    prompts, negative = ["a lighthouse", "a red barn"], "blurry"
    cond = model.get_learned_conditioning(prompts)
    uncond = model.get_learned_conditioning([negative] * 2)
    pipe = StableDiffusionDepth2ImgPipeline(
        vae=tiny_diffusers_vae(), text_encoder=None, tokenizer=None,
        unet=diffusers_twin(model.model.diffusion_model, "sd21"),
        scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                         timestep_spacing="trailing"),
        depth_estimator=None, feature_extractor=None)
    pipe.set_progress_bar_config(disable=True)
    seen = []
    hook = pipe.unet.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    image = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = pipe(prompt_embeds=cond, negative_prompt_embeds=uncond, image=image, guidance_scale=5.0, strength=1.0,
                   depth_map=torch.from_numpy(np.stack(maps)).float(), num_inference_steps=1,
                   generator=torch.Generator().manual_seed(4), output_type="latent").images
    hook.remove()
    (unet_in,) = seen  # [uncond x2, cond x2] rows: scaled latent + depth
    sigma = pipe.scheduler.sigmas[0].item()
    start = unet_in[2:, :4] * (sigma ** 2 + 1) ** 0.5  # the pipeline's latents at its first step
    monkeypatch.setattr(rng.ImageRNG, "next", lambda self: start / sigma)  # the host's noise * sigma_max = start
    with UNetSpy() as spy:
        ours = generate(script, on(maps), prompt=prompts, negative_prompt=negative, batch_size=2, steps=1,
                        cfg_scale=5.0, sampler_name="Euler").latents
    (call,) = spy.calls
    assert torch.allclose(call.t, torch.full((4,), 999.0))
    torch.testing.assert_close(call.x[:, 4:], torch.cat([unet_in[2:, 4:], unet_in[:2, 4:]]), atol=1e-6, rtol=0)
    relative = ((ours - ref).abs().max() / ref.abs().max()).item()
    assert relative < 1e-4, relative
    other = generate(script, on(maps, invert=True), prompt=prompts, negative_prompt=negative, batch_size=2, steps=1,
                     cfg_scale=5.0, sampler_name="Euler").latents
    assert ((other - ref).abs().max() / ref.abs().max()).item() > 1e-3  # the check can tell another map apart


# --- 2. the map at the UNet, per image, per pass ---------------------------------------------------------------
def test_each_image_gets_its_map_in_every_row_and_and_prompts(script):
    maps = [depth_values(seed=1), depth_values(seed=2)]
    with UNetSpy() as spy:
        generate(script, on(maps), prompt=["a cat AND a hat", "a dog"], batch_size=2)
    rows = [expected(m, (8, 8))[0] for m in maps]
    for call in spy.calls:  # cond rows: image 0 twice (AND), image 1; then uncond rows: image 0, image 1
        assert call.x.shape[0] == 5
        for row, image in zip(call.x[:, 4:], (0, 0, 1, 0, 1)):
            torch.testing.assert_close(row, rows[image], atol=1e-6, rtol=0)


def test_ngms_rows_are_trimmed_to_the_cond_rows(script):
    maps = [depth_values(seed=1), depth_values(seed=2)]
    with UNetSpy() as spy:
        res = generate(script, on(maps), batch_size=2, steps=4, s_min_uncond=100.0)
    assert "NGMS" in res.infotexts[0] and any(call.x.shape[0] == 2 for call in spy.calls)
    for call in spy.calls:
        for row, image in zip(call.x[:, 4:], (0, 1, 0, 1)):
            torch.testing.assert_close(row, expected(maps[image], (8, 8))[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("upscaler,resize", [("Latent", {}), ("Lanczos", {}), ("Latent", {"hr_resize_x": 128,
                                                                                         "hr_resize_y": 96})])
def test_hires_pass_gets_the_map_resized_again(script, upscaler, resize):
    values = depth_values()
    with UNetSpy() as spy:
        res = generate(script, on(values, invert=True), enable_hr=True, hr_scale=2, hr_upscaler=upscaler,
                       denoising_strength=0.5, **resize)
    sizes = sorted({tuple(c.x.shape[-2:]) for c in spy.calls})
    final = (12, 16) if resize else (16, 16)
    assert sizes == sorted({(8, 8), final})
    for call in spy.calls:
        hw = tuple(call.x.shape[-2:])
        if hw == (12, 16):  # "Resize width/height to": built at 16x16 (cover), centre-cropped like the latent
            want = expected(values, (16, 16), invert=True)[..., 2:14, :]
        else:
            want = expected(values, hw, invert=True)
        for row in call.x[:, 4:]:
            torch.testing.assert_close(row, want[0], atol=1e-6, rtol=0)
    assert len(res.images) == 1


# --- 3. img2img: use this map / estimate ------------------------------------------------------------------------
def test_img2img_map_replaces_the_webui_midas_estimate_and_estimate_keeps_it(script):
    values = depth_values()
    with UNetSpy() as plain:
        without = img2img(steps=2, width=64, height=64, denoising_strength=0.6).latents
    with UNetSpy() as estimate:
        kept = generate(script, {"enabled": True, "source": "estimate"}, mode="img2img", denoising_strength=0.6)
    with UNetSpy() as mapped:
        generate(script, on(values), mode="img2img", denoising_strength=0.6)
    assert torch.equal(kept.latents, without)  # the WebUI's MiDaS path, untouched
    assert "Depth source: estimate" in kept.infotexts[0]
    midas = plain.calls[0].x[0, 4:]
    assert not torch.allclose(midas, expected(values, (8, 8))[0], atol=1e-3)
    for call in mapped.calls:
        for row in call.x[:, 4:]:
            torch.testing.assert_close(row, expected(values, (8, 8))[0], atol=1e-6, rtol=0)


# --- 4. disabled is inert ---------------------------------------------------------------------------------------
def test_disabled_with_the_ui_defaults_is_bit_identical(script):
    runner = scripts.ScriptRunner([script.DepthScript()], is_img2img=True)
    api = Api(scripts.ScriptRunner([script.DepthScript()]), runner)
    defaults = api.default_script_arg_img2img[1:]
    assert defaults == [False, "use this map", None, False]
    plain = img2img(steps=2, width=64, height=64).latents
    res = img2img(runner=runner, script_args=defaults, steps=2, width=64, height=64)
    assert torch.equal(res.latents, plain) and "Depth" not in res.infotexts[0]
    stale = img2img(runner=runner, script_args=[False, "nonsense", "not an image", "yes"], steps=2, width=64, height=64)
    assert torch.equal(stale.latents, plain)
    load_model("sd15")  # another family: disabled still does nothing
    assert torch.equal(txt2img(steps=2).latents, generate(script, {"enabled": False}).latents)


@pytest.fixture
def other():
    """A second checkpoint named 'other' (the WebUI checks hires / refiner checkpoint names before our hooks)."""
    from modules import sd_models
    from support.tiny_models import make_ldm
    sd_models.register_checkpoint("other", make_ldm("sd21", seed=3))
    yield
    sd_models.forget_checkpoints()


# --- 5. bad inputs ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("values,fields,needle", [
    ({"enabled": True}, {}, "give a depth map \\(argument 'depth_map'"),
    ({"enabled": True, "source": "estimate"}, {}, "'estimate' makes the depth from the input image"),
    ("three", {"batch_size": 2}, "Depth got 3 depth maps for a batch of 2 images"),
    ("flat", {}, "the depth map is flat"),
    ("map", {"enable_hr": True, "hr_checkpoint_name": "other"}, "hires fix would switch to the checkpoint 'other'"),
    ("map", {"refiner_checkpoint": "other", "refiner_switch_at": 0.5}, "the refiner \\('other'\\)"),
    ({"enabled": True, "depth_map": "bm90IGFuIGltYWdl"}, {}, "argument 'depth_map'.* is not a base64-encoded image"),
])
def test_bad_inputs_stop_before_sampling_and_the_next_generation_is_fine(script, values, fields, needle, other):
    values = {"three": on([depth_values(seed=i) for i in range(3)]), "flat": on(np.full((8, 8), 9.0)),
              "map": on(depth_values())}.get(values, values) if isinstance(values, str) else values
    with UNetSpy() as spy:
        with pytest.raises(Exception, match=needle):
            generate(script, values, **fields)
    assert spy.calls == []
    assert len(generate(script, on(depth_values())).images) == 1


def test_non_depth_checkpoint_is_refused(script):
    load_model("sd21")
    with UNetSpy() as spy:
        with pytest.raises(Exception, match="is not an SD 2 depth model \\(4 input channels.*Load a depth checkpoint"):
            generate(script, on(depth_values()))
    assert spy.calls == []


# --- 6. infotext ------------------------------------------------------------------------------------------------
def test_infotext_round_trip(script):
    res = generate(script, on(depth_values(), invert=True))
    info = res.infotexts[0]
    assert "Depth: True" in info and "Depth source: use this map" in info and "Depth invert: True" in info
    from modules import infotext_utils
    params = infotext_utils.parse_generation_parameters(info)
    restored = script.SPEC.from_infotext(params)
    assert restored.enabled and restored.invert and restored.source == "use this map"
