"""IC-Light with WebUI features that change the model or the latent under it: a hires pass that crops ("Resize
width/height to" another aspect ratio), the refiner (reloads weights mid-sampling), FP8 weight storage."""
import pytest
import torch

from modules import shared

from lib_iclight.images import resize_and_center_crop
from support.iclight_fixtures import state_hash
from support.iclight_webui import (UNetSpy, demo_foreground, encode, fc_on, folder, generate, host,  # noqa: F401
                                   rgba_image, script)


# --- hires pass that crops ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("upscaler", ["Latent", "Lanczos"])
def test_hires_resize_to_another_aspect_ratio_sees_the_cropped_concat(script, upscaler):
    """64x64, "Resize width/height to" 96x64: the WebUI upscales to 96x96, builds the image conditioning there and
    then drops 2 latent rows at the top and 2 at the bottom. The concat must be cropped the same way (before the fix
    the UNet's torch.cat failed: 12x12 concat, 8x12 latent)."""
    model = shared.sd_model
    fg = demo_foreground(rgba_image(1))
    first = encode(model, [fg])[0]
    covered = encode(model, [resize_and_center_crop(fg, 96, 96)])[0]
    with UNetSpy() as spy:
        result = generate(script, fc_on(), enable_hr=True, hr_upscaler=upscaler, hr_resize_x=96, hr_resize_y=64,
                          steps=2, denoising_strength=0.5)
    sizes = {tuple(c.x.shape[-2:]) for c in spy.calls}
    assert sizes == {(8, 8), (8, 12)} and result.latents.shape[-2:] == (8, 12)
    for c in spy.calls:
        want = first if c.x.shape[-2:] == (8, 8) else covered[:, 2:10, :]
        assert all(torch.allclose(row, want, atol=1e-6) for row in c.x[:, 4:])


def test_hires_resize_in_portrait(script):
    """Cropping columns: 64x64 to 64x96 covers with 96x96 and drops 2 latent columns on each side."""
    model = shared.sd_model
    covered = encode(model, [resize_and_center_crop(demo_foreground(rgba_image(1)), 96, 96)])[0]
    with UNetSpy() as spy:
        generate(script, fc_on(), enable_hr=True, hr_resize_x=64, hr_resize_y=96, steps=2)
    hires = [c for c in spy.calls if c.x.shape[-2:] == (12, 8)]
    assert hires and all(torch.allclose(row, covered[:, :, 2:10], atol=1e-6) for c in hires for row in c.x[:, 4:])


# --- refiner and FP8: the model under IC-Light would change or cannot hold the offsets ---------------------------
@pytest.fixture
def checkpoints():
    from modules import devices, sd_models
    from support.generation import attach_text_encoder
    from support.tiny_models import make_ldm
    base = sd_models.register_checkpoint("base", attach_text_encoder(make_ldm("sd15", seed=0)))
    sd_models.register_checkpoint("refiner", attach_text_encoder(make_ldm("sd15", seed=1)))
    sd_models.reload_model_weights(info=base)
    yield
    sd_models.forget_checkpoints()
    devices.fp8 = False


@pytest.mark.parametrize("switch_at", [0.5, None])
def test_a_refiner_is_refused_before_sampling(script, checkpoints, switch_at):
    """The refiner reloads the weights mid-sampling (apply_refiner): the merge would be dropped and the remaining
    steps would silently run without IC-Light. Stopped before sampling with a message saying what to change."""
    model = shared.sd_model
    before = state_hash(model)
    with UNetSpy() as spy, pytest.raises(ValueError) as info:
        generate(script, fc_on(), refiner_checkpoint="refiner", refiner_switch_at=switch_at)
    assert "refiner" in str(info.value).lower() and "Turn the refiner off" in str(info.value)
    assert spy.calls == [] and state_hash(model) == before
    for off in (dict(refiner_checkpoint=None), dict(refiner_checkpoint="", refiner_switch_at=0.5),
                dict(refiner_checkpoint="refiner", refiner_switch_at=1.0)):  # 1 = never switch
        with UNetSpy() as spy:
            generate(script, fc_on(), steps=2, **off)
        assert spy.calls and all(c.x.shape[1] == 8 for c in spy.calls), off


def test_fp8_weight_storage_is_refused_naming_the_setting(script, checkpoints):
    """FP8 weights (Settings > Optimizations > FP8 weight) cannot take IC-Light's offsets (in-place add on float8
    fails, and the offsets are finer than FP8's precision): refused before anything is changed."""
    shared.opts.data["fp8_storage"] = "Enable"
    generate(script, {"enabled": False}, steps=2)  # loads the weights as FP8
    model = shared.sd_model
    assert model.model.diffusion_model.input_blocks[0][0].weight.dtype == torch.float8_e4m3fn
    before = state_hash(model)
    with UNetSpy() as spy, pytest.raises(ValueError) as info:
        generate(script, fc_on())
    message = str(info.value)
    assert message.startswith("IC-Light") and "Settings > Optimizations > FP8 weight" in message
    assert "'Disable'" in message
    assert spy.calls == [] and state_hash(model) == before
    shared.opts.data["fp8_storage"] = "Disable"
    with UNetSpy() as spy:
        generate(script, fc_on(), steps=2)  # reloaded in full precision: IC-Light works again
    assert spy.calls and all(c.x.shape[1] == 8 for c in spy.calls)
    with UNetSpy() as spy, pytest.raises(ValueError, match="FP8 weight"):  # the API's override comes too late
        generate(script, fc_on(), override_settings={"fp8_storage": "Enable"})  # for the weights: refused first
    assert spy.calls == []


# --- Tiling ------------------------------------------------------------------------------------------------------
class Hijack:
    """v1.10.1 sd_hijack.StableDiffusionModelHijack.apply_circular: `self.layers` is the module list flattened when
    the model was hijacked (at load), so a module put into the model later (IC-Light's widened conv_in) is not in it;
    the switch runs only when the setting changes."""

    def __init__(self, model):
        self.layers, self.circular_enabled = list(model.modules()), False

    def apply_circular(self, enable):
        if self.circular_enabled == enable:
            return
        self.circular_enabled = enable
        for layer in [m for m in self.layers if type(m) == torch.nn.Conv2d]:  # noqa: E721 (exact type)
            layer.padding_mode = "circular" if enable else "zeros"


@pytest.mark.parametrize("first", [False, True])
def test_tiling_reaches_the_widened_first_conv(script, first):
    """Tiling toggled while the merge stays: the first conv (ours) pads like every other conv of the UNet."""
    hijack = Hijack(shared.sd_model)
    modes = []
    unet = shared.sd_model.model.diffusion_model
    unet.register_forward_pre_hook(lambda m, a: modes.append(m.input_blocks[0][0].padding_mode))
    for tiling in (first, not first, first):
        modes.clear()
        generate(script, fc_on(), steps=2, p_hook=lambda p, t=tiling: hijack.apply_circular(t))
        assert set(modes) == {"circular" if tiling else "zeros"}, tiling
    assert script.MERGER.merge_count >= 1 and unet.input_blocks[1][0].in_layers[2].padding_mode == (
        "circular" if first else "zeros")
