"""Edit models through the WebUI host double: SDXL InstructPix2Pix / CosXL Edit in img2img (the WebUI's own Image
CFG Scale, UI and API) and txt2img (the accordion's image), hires, batches, the 3-way batch the UNet sees; bad inputs
refused before sampling with the next generation unaffected; disabled is inert; IC-Light and ip2p coexist;
HiDiffusion on an SDXL edit model."""
import numpy as np
import pytest
import torch
from PIL import Image

import lib_concat
from modules import script_callbacks, scripts, sd_models, shared
from modules.api.api import Api
from support.edit_models import COSXL_KEYS, edit_model, load_checkpoint
from support.generation import gradient_image, img2img, load_model, reset_host, txt2img
from support.iclight_webui import b64
from support.scripts_loader import load_script, unload_callbacks

FIELDS = dict(steps=3, width=64, height=64, sampler_name="Euler")


@pytest.fixture
def edit():
    reset_host()
    script = load_script("edit_models.py")
    yield script
    unload_callbacks("edit_models.py")
    script.glue_edit.uninstall()
    sd_models.forget_checkpoints()
    assert not script_callbacks.reported_errors and not scripts.reported_errors
    reset_host()


class UNetSpy:
    """x (with the concat channels) of every UNet call."""

    def __init__(self):
        self.unet = shared.sd_model.model.diffusion_model
        self.x = []
        self.handle = self.unet.register_forward_pre_hook(lambda m, args: self.x.append(args[0].detach().clone()))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def photo(width=64, height=64, seed=3):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def args(enabled=True, image=None, image_cfg_scale=1.5):
    return [enabled, image, image_cfg_scale]


def run(script, mode="txt2img", script_args=None, **fields):
    go = txt2img if mode == "txt2img" else img2img
    return go([script.EditModelScript()], script_args if script_args is not None else args(False), arg_counts=[3],
              **{**FIELDS, **fields})


def sdxl_edit(cosxl=False, name=None):
    model = edit_model("sdxl")
    load_checkpoint(model, name or ("cosxl" if cosxl else "sdxl_ip2p"), **(COSXL_KEYS if cosxl else {}))
    return model


def mode_latent(model, image, width=64, height=64):
    """The posterior mode of `image` resized to the generation (img2img's / the accordion's rule), unscaled."""
    array = np.asarray(image.convert("RGB").resize((width, height), Image.LANCZOS), dtype=np.float32) / 255.0
    x = torch.from_numpy(array).permute(2, 0, 1)[None] * 2 - 1
    with torch.no_grad():
        return model.first_stage_model.encode(x).mode()


def test_img2img_runs_with_the_webuis_image_cfg_scale_from_ui_and_api(edit):
    model = sdxl_edit()
    init = gradient_image(64, 64)
    with UNetSpy() as spy:
        first = run(edit, "img2img", init_images=[init], image_cfg_scale=2.0)
    x = spy.x[0]
    assert x.shape == (3, 8, 8, 8)  # the 3-way batch [cond + image, uncond + image, uncond + zeros]
    want = mode_latent(model, init)[0]
    torch.testing.assert_close(x[0, 4:], want) and torch.testing.assert_close(x[1, 4:], want)
    assert torch.equal(x[2, 4:], torch.zeros_like(want))
    assert first.extra_generation_params[edit.FAMILY_KEY] == "InstructPix2Pix (SDXL)"
    assert "Edit model" not in first.extra_generation_params  # the accordion was off: only what ran is recorded
    other = run(edit, "img2img", init_images=[init], image_cfg_scale=1.2)
    assert not torch.equal(first.latents, other.latents)  # the scale is honoured

    t2i = scripts.ScriptRunner([edit.EditModelScript()], is_img2img=False)
    i2i = scripts.ScriptRunner([edit.EditModelScript()], is_img2img=True)
    api = Api(t2i, i2i)  # defaults from the real gradio components' values: the accordion off
    result = api.img2imgapi({"prompt": "a cat", "negative_prompt": "blurry", "seed": 1, "init_images": [b64(init)],
                             "image_cfg_scale": 2.0, "denoising_strength": 0.6, "cfg_scale": 7.0, **FIELDS})
    assert torch.equal(result.latents, first.latents)


def test_txt2img_needs_the_accordions_image_then_follows_every_pass(edit):
    model = sdxl_edit(cosxl=True)
    with UNetSpy() as spy, pytest.raises(ValueError, match="edit model .CosXL Edit.*enable 'Edit model' and give"):
        run(edit)
    assert spy.x == []  # refused before sampling
    image = photo(96, 96)
    with UNetSpy() as spy:
        result = run(edit, script_args=args(True, b64(image), 1.3), enable_hr=True, hr_scale=2.0,
                     hr_upscaler="Latent", denoising_strength=0.5)
    low, high = spy.x[0], spy.x[-1]
    assert low.shape == (3, 8, 8, 8) and high.shape == (3, 8, 16, 16)
    for x, size in ((low, 64), (high, 128)):  # CosXL Edit: the mode times the scale factor, at each pass's size
        want = mode_latent(model, image, size, size)[0] * model.scale_factor
        torch.testing.assert_close(x[0, 4:], want, atol=1e-5, rtol=1e-5)
        assert torch.equal(x[2, 4:], torch.zeros_like(want))
    params = result.extra_generation_params
    assert params["Edit model"] is True and params["Edit model image CFG scale"] == 1.3
    assert params[edit.FAMILY_KEY] == "CosXL Edit"


def test_batches_get_one_image_each(edit):
    sdxl_edit()
    a, b = photo(seed=1), photo(seed=2)
    with UNetSpy() as spy:
        run(edit, script_args=args(True, [b64(a), b64(b)]), batch_size=2)
    x = spy.x[0]
    assert x.shape == (6, 8, 8, 8) and not torch.equal(x[0, 4:], x[1, 4:])
    assert torch.equal(x[0, 4:], x[2, 4:]) and torch.equal(x[1, 4:], x[3, 4:])  # cond and image-uncond rows agree
    with pytest.raises(ValueError, match="3 input images for a batch of 2"):
        run(edit, script_args=args(True, [b64(a)] * 3), batch_size=2)


@pytest.mark.parametrize("case", ["aspect", "not an edit model", "cosxl with DDIM", "skip early CFG", "refiner",
                                  "hires checkpoint", "too small"])
def test_bad_inputs_refused_before_sampling_and_next_generation_runs(edit, case):
    fields, script_args = {}, args(True, b64(photo()))
    pattern = {"aspect": r"argument 'image' \(Input image\) is 64x128", "not an edit model": "not an edit model",
               "cosxl with DDIM": "'DDIM' runs on the discrete", "skip early CFG": "skip early CFG",
               "refiner": "refiner .'other'. is not an edit model", "too small": "at least 16 pixels",
               "hires checkpoint": "switch to the checkpoint 'other'"}[case]
    if case == "not an edit model":
        load_model("sdxl")
    else:
        sdxl_edit(cosxl=case == "cosxl with DDIM")
    if case == "aspect":
        script_args = args(True, b64(photo(64, 128)))
    elif case == "too small":
        script_args = args(True, b64(photo(8, 8)))
    elif case == "cosxl with DDIM":
        fields = dict(sampler_name="DDIM")
    elif case == "skip early CFG":
        fields = dict(override_settings={"skip_early_cond": 0.2})
    elif case in ("refiner", "hires checkpoint"):
        sd_models.register_checkpoint("other", edit_model("sdxl", seed=4))
        fields = dict(refiner_checkpoint="other", refiner_switch_at=0.5) if case == "refiner" else dict(
            enable_hr=True, hr_checkpoint_name="other", hr_upscaler="Latent", denoising_strength=0.5)
    with UNetSpy() as spy, pytest.raises(ValueError, match=pattern):
        run(edit, script_args=script_args, **fields)
    assert spy.x == []
    assert shared.opts.skip_early_cond == 0  # override_settings restored
    good = run(edit, script_args=args(True, b64(photo())) if case != "not an edit model" else args(False))
    assert torch.isfinite(good.latents).all()


def test_disabled_is_inert_on_models_the_webui_runs_itself(edit):
    """A plain model and the WebUI's own SD 1.5 InstructPix2Pix (img2img) with the accordion's UI defaults:
    bit-identical to a WebUI without the suite, nothing in the infotext."""
    for family, mode, kwargs in (("sd15", "txt2img", {}), ("sdxl", "img2img", {}),
                                 ("sd15", "img2img", dict(in_channels=8, cond_stage_key="edit"))):
        load_model(family, **kwargs)
        plain = (txt2img if mode == "txt2img" else img2img)(**{**FIELDS, "image_cfg_scale": 1.5} if mode == "img2img"
                                                            else FIELDS)
        load_model(family, **kwargs)
        extra = {"image_cfg_scale": 1.5} if mode == "img2img" else {}
        ours = run(edit, mode, args(False, None, 1.5), **extra)
        assert torch.equal(ours.latents, plain.latents), (family, mode)
        assert not any(k.startswith("Edit model") for k in ours.extra_generation_params)


def test_sd15_ip2p_in_txt2img_with_the_accordions_image(edit):
    load_model("sd15", in_channels=8, cond_stage_key="edit")
    image = photo()
    with UNetSpy() as spy:
        run(edit, script_args=args(True, b64(image), 1.5))
    x = spy.x[0]
    assert x.shape == (3, 8, 8, 8)
    torch.testing.assert_close(x[0, 4:], mode_latent(shared.sd_model, image)[0])  # unscaled, as the WebUI's ip2p
    assert torch.equal(x[2, 4:], torch.zeros_like(x[2, 4:]))


def test_iclight_and_ip2p_coexist(edit, tmp_path):
    """8 channels on SD 1.5 are InstructPix2Pix or IC-Light fc: the user's choice of feature decides. An ip2p
    checkpoint never gets an IC-Light merge, IC-Light on it is refused (also with Edit model on: both can never run
    together, IC-Light needs a plain 4-channel checkpoint and Edit model an edit one), and an IC-Light merge before
    does not change how the WebUI treats the ip2p checkpoint loaded after it."""
    from support.iclight_fixtures import write_offset_file
    from support.iclight_webui import rgba_image
    write_offset_file(str(tmp_path), "fc.safetensors", in_channels=8, seed=5)
    shared.cmd_opts.iclight_dir = str(tmp_path)
    iclight = load_script("iclight.py")
    try:
        both = [edit.EditModelScript(), iclight.ICLightScript()]
        light = {"enabled": True, "model": "fc.safetensors", "foreground": b64(rgba_image(1))}
        iclight_off = iclight.SPEC.positional(iclight.SPEC.defaults())
        load_model("sd15")  # a plain SD 1.5: IC-Light merges into it
        txt2img([iclight.ICLightScript()], [light] + iclight_off[1:], arg_counts=[len(iclight_off)], **FIELDS)
        assert shared.sd_model.model.diffusion_model.input_blocks[0][0].weight.shape[1] == 8

        ip2p = load_model("sd15", seed=2, in_channels=8, cond_stage_key="edit")  # the WebUI loads an ip2p checkpoint
        state = {k: v.clone() for k, v in ip2p.state_dict().items()}
        assert ip2p.cond_stage_key == "edit" and ip2p.model.conditioning_key == "hybrid"
        assert edit.model_edit_family(ip2p).name == "sd15_ip2p"
        with pytest.raises(ValueError, match="IC-Light"):
            txt2img([iclight.ICLightScript()], [light] + iclight_off[1:], arg_counts=[len(iclight_off)], **FIELDS)
        with pytest.raises(ValueError, match="IC-Light applies to a plain SD 1.5 checkpoint"):  # both on: refused
            txt2img(both, args(True, b64(photo())) + [light] + iclight_off[1:], arg_counts=[3, len(iclight_off)],
                    **FIELDS)
        run(edit, script_args=args(True, b64(photo())))
        now = ip2p.state_dict()
        assert all(torch.equal(v, now[k]) for k, v in state.items())  # never merged into
        assert ip2p.cond_stage_key == "edit" and ip2p.model.conditioning_key == "hybrid"
    finally:
        iclight.MERGER.restore()
        unload_callbacks("iclight.py")
        del shared.cmd_opts.iclight_dir


def test_hidiffusion_runs_on_an_sdxl_edit_model(edit):
    """Same UNet structure as SDXL (only conv_in is wider): RAU-Net and MSW-MSA run, and HiDiffusion restores it."""
    import lib_hidiffusion as H
    from support.hidiffusion_webui_probe import PhaseProbe
    hidiffusion = load_script("hidiffusion.py")
    try:
        model = sdxl_edit()
        unet = model.model.diffusion_model
        spec = hidiffusion.SPEC
        hd_args = spec.positional(spec.replace(spec.defaults(), enabled=True, timing="Fraction of steps", t1=0.7,
                                               t2=0.4, aggressive="Off"))
        config = H.make_config(unet, (8, 8), "sdxl", t1=0.7, t2=0.4, aggressive=False)
        probe = PhaseProbe.for_config(unet, config)
        try:
            result = txt2img([edit.EditModelScript(), hidiffusion.HiDiffusionScript()],
                             args(True, b64(photo())) + hd_args, arg_counts=[3, len(hd_args)], **FIELDS)
        finally:
            probe.close()
        assert probe.phases() == [tuple(H.rau_active(i, 3, config)) for i in range(3)]  # RAD and the pool pair ran
        assert {c["windows"] for c in probe.calls} == {len(config.blocks.window_blocks)}
        assert result.extra_generation_params["HiDiffusion"] is True and torch.isfinite(result.latents).all()
        assert not H.is_patched(unet)
    finally:
        hidiffusion.CONTROLLER.release()
        unload_callbacks("hidiffusion.py")
