"""The host double loads and switches checkpoints as v1.10.1 does: the refiner reloads weights in the middle of
sampling (sd_samplers_common.apply_refiner, from the CFG denoiser), the next batch goes back to the main checkpoint
(process_images_inner), and FP8 weight storage keeps Conv2d/Linear weights as float8 (sd_models.load_model_weights)."""
import pytest
import torch

from modules import devices, script_callbacks, sd_models, shared

from support.generation import attach_text_encoder, load_model, reset_host, txt2img
from support.tiny_models import make_ldm


@pytest.fixture(autouse=True)
def _host():
    reset_host()
    load_model("sd15")
    yield
    sd_models.forget_checkpoints()
    devices.fp8 = False
    script_callbacks.clear_callbacks()
    reset_host()


@pytest.fixture
def checkpoints():
    base = sd_models.register_checkpoint("base", attach_text_encoder(make_ldm("sd15", seed=0)))
    refiner = sd_models.register_checkpoint("refiner", attach_text_encoder(make_ldm("sd15", seed=1)))
    sd_models.reload_model_weights(info=base)
    return base, refiner


def _probe(model):
    return model.model.diffusion_model.out[2].weight


def test_refiner_reloads_weights_mid_sampling_into_the_same_model(checkpoints):
    base, refiner = checkpoints
    model = shared.sd_model
    loaded, seen = [], []
    script_callbacks.on_model_loaded(loaded.append)
    model.model.diffusion_model.register_forward_pre_hook(lambda m, a: seen.append(_probe(model).detach().clone()))
    result = txt2img(steps=6, refiner_checkpoint="refiner", refiner_switch_at=0.5)
    base_w, refiner_w = base.state_dict["model.diffusion_model.out.2.weight"], \
        refiner.state_dict["model.diffusion_model.out.2.weight"]
    which = ["base" if torch.equal(w, base_w) else "refiner" if torch.equal(w, refiner_w) else "?" for w in seen]
    assert "?" not in which and which == sorted(which), which  # base first, then refiner
    assert 0 < which.count("base") < len(which)
    assert loaded == [model] and shared.sd_model is model and model.sd_checkpoint_info is refiner
    assert result.extra_generation_params["Refiner"] == "refiner"
    assert result.extra_generation_params["Refiner switch at"] == 0.5
    assert shared.opts.data["sd_model_checkpoint"] == "base", "SkipWritingToConfig: the main checkpoint stays"

    seen.clear()
    txt2img(steps=2)  # the next generation's batch reloads the main checkpoint first
    assert torch.equal(seen[0], base_w) and model.sd_checkpoint_info is base


def test_unknown_refiner_is_refused():
    with pytest.raises(Exception, match="Could not find checkpoint with name nope"):
        txt2img(steps=2, refiner_checkpoint="nope", refiner_switch_at=0.5)
    txt2img(steps=2, refiner_checkpoint="None", refiner_switch_at=0.5)


def test_fp8_weight_storage(checkpoints):
    """check_fp8 + load_model_weights: "Enable" stores every Conv2d/Linear outside the VAE as float8_e4m3fn; inference
    runs under devices.autocast (bfloat16 on the CPU); "Enable for SDXL" leaves SD 1.5 alone; turning it off
    reloads the weights at the next generation."""
    base, _ = checkpoints
    plain = txt2img(steps=3).latents
    shared.opts.data["fp8_storage"] = "Enable"
    stored = txt2img(steps=3).latents  # the batch's reload_model_weights notices the setting changed
    model = shared.sd_model
    unet = model.model.diffusion_model
    assert devices.fp8 and unet.input_blocks[0][0].weight.dtype == torch.float8_e4m3fn
    assert all(m.weight.dtype == torch.float8_e4m3fn for m in unet.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert model.first_stage_model.enc.weight.dtype == torch.float32
    assert torch.isfinite(stored).all() and not torch.equal(stored, plain)

    shared.opts.data["fp8_storage"] = "Enable for SDXL"
    again = txt2img(steps=3).latents
    assert not devices.fp8 and unet.input_blocks[0][0].weight.dtype == torch.float32
    assert torch.equal(again, plain)
    assert torch.equal(unet.input_blocks[0][0].weight, base.state_dict["model.diffusion_model.input_blocks.0.0.weight"])
