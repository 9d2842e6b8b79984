"""Loading edit checkpoints: detection from full-size key sets (meta device), the config the WebUI picks with and
without the suite (modules.sd_models_config of the host double follows v1.10.1), and the model setup on load."""
import os

import pytest
import torch

from lib_concat import COSXL_EDIT, SD15_IP2P, SDXL_IP2P, ConcatError, classify_checkpoint
from modules import sd_models, sd_models_config, shared
from support.checkpoint_keys import checkpoint
from support.edit_models import COSXL_KEYS, edit_model, load_checkpoint
from support.generation import load_model, reset_host
from support.scripts_loader import load_script, unload_callbacks
from support.tiny_models import make_ldm

COSXL = {"edm_vpred.sigma_min": torch.tensor(0.002), "edm_vpred.sigma_max": torch.tensor(120.0)}
ORDINARY = {  # name -> (kind, in_channels, extra keys)
    "SD 1.5": ("sd15", 4, {}), "SD 1.5 inpainting": ("sd15", 9, {}), "SD 1.5 InstructPix2Pix": ("sd15", 8, {}),
    "SD 2.1": ("sd2", 4, {}), "SD 2.1 768-v": ("sd2", 4, {sd_models_config.HOST_DOUBLE_SD2_V: True}),
    "SD 2 inpainting": ("sd2", 9, {}), "SDXL": ("sdxl", 4, {}), "SDXL inpainting": ("sdxl", 9, {}),
    "SDXL refiner": ("sdxl_refiner", 4, {}), "CosXL (not edit)": ("sdxl", 4, dict(COSXL)),
}


@pytest.fixture
def edit_script():
    reset_host()
    script = load_script("edit_models.py")
    yield script
    unload_callbacks("edit_models.py")
    script.glue_edit.uninstall()
    reset_host()


def info(name):
    return type("Info", (), {"filename": f"/models/Stable-diffusion/{name}.safetensors", "title": name})()


def test_detection_on_full_size_key_sets():
    assert classify_checkpoint(checkpoint("sd15", 8)).family == SD15_IP2P
    assert classify_checkpoint(checkpoint("sdxl", 8)).family == SDXL_IP2P
    cosxl = classify_checkpoint(checkpoint("sdxl", 8, **COSXL))
    assert cosxl.family == COSXL_EDIT and (cosxl.sigma_min, cosxl.sigma_max, cosxl.sigma_data) == pytest.approx(
        (0.002, 120.0, 1.0))
    for name, (kind, channels, extra) in ORDINARY.items():
        if name != "SD 1.5 InstructPix2Pix":
            assert classify_checkpoint(checkpoint(kind, channels, **extra)) is None, name
    # the file name plays no part
    assert classify_checkpoint(checkpoint("sdxl", 4), what="cosxl_edit.safetensors") is None


@pytest.mark.parametrize("extra,why", [
    ({"edm_vpred.sigma_min": torch.tensor(0.002)}, "edm_vpred.sigma_min"),
    ({"v_pred": torch.tensor(1.0)}, "v_pred"),
    ({"edm_mean": torch.zeros(4), "edm_std": torch.ones(4)}, "edm_mean"),
])
def test_eight_channel_sdxl_with_unknown_keys_is_refused(extra, why):
    with pytest.raises(ConcatError, match=rf"odd\.safetensors is an SDXL checkpoint with an 8-channel UNet.*{why}"):
        classify_checkpoint(checkpoint("sdxl", 8, **extra), what="odd.safetensors")
    with pytest.raises(ConcatError, match="refiner's text encoder"):
        classify_checkpoint(checkpoint("sdxl_refiner", 8))
    bad = dict(COSXL, **{"edm_vpred.sigma_min": torch.tensor(200.0)})
    with pytest.raises(ConcatError, match="damaged"):
        classify_checkpoint(checkpoint("sdxl", 8, **bad))


def test_ordinary_checkpoints_get_the_webuis_config_unchanged(edit_script, monkeypatch):
    """With the suite, every other checkpoint's config is what v1.10.1 picks without it: the wrapper calls the
    WebUI's function once with the same objects and returns its result as is."""
    edit_script.glue_edit.uninstall()
    without = {name: sd_models_config.find_checkpoint_config(checkpoint(k, c, **e), info(name))
               for name, (k, c, e) in ORDINARY.items()}
    assert without["SD 1.5 InstructPix2Pix"] == sd_models_config.config_instruct_pix2pix
    assert without["SD 2.1 768-v"] == sd_models_config.config_sd2v and without["SDXL"] == sd_models_config.config_sdxl
    calls = []
    original = sd_models_config.find_checkpoint_config

    def spy(state_dict, checkpoint_info):
        result = original(state_dict, checkpoint_info)
        calls.append((state_dict, checkpoint_info, result))
        return result

    monkeypatch.setattr(sd_models_config, "find_checkpoint_config", spy)
    edit_script.glue_edit.install()
    assert sd_models_config.find_checkpoint_config is not spy
    for name, (kind, channels, extra) in ORDINARY.items():
        state, checkpoint_info = checkpoint(kind, channels, **extra), info(name)
        calls.clear()
        result = sd_models_config.find_checkpoint_config(state, checkpoint_info)
        assert result == without[name], name
        assert len(calls) == 1 and calls[0][0] is state and calls[0][1] is checkpoint_info and calls[0][2] is result
    edit_script.glue_edit.uninstall()
    assert sd_models_config.find_checkpoint_config is spy


def test_sdxl_edit_checkpoints_get_the_suites_configs(edit_script, tmp_path):
    from omegaconf import OmegaConf
    ip2p = sd_models_config.find_checkpoint_config(checkpoint("sdxl", 8), info("anything"))
    cosxl = sd_models_config.find_checkpoint_config(checkpoint("sdxl", 8, **COSXL), info("other"))
    for path, scaling in ((ip2p, "EpsScaling"), (cosxl, "VScaling")):
        config = OmegaConf.load(path).model.params
        assert config.network_config.params.in_channels == 8 and config.network_config.params.context_dim == 2048
        assert config.denoiser_config.params.scaling_config.target.endswith(scaling)
        assert os.path.dirname(path).endswith("configs") and os.path.isfile(path)
    assert edit_script.glue_edit.found_for(info("other").filename).family.name == "cosxl_edit"
    # a yaml next to the checkpoint is the user's choice and wins, also over the refusal of unknown keys
    mine = tmp_path / "mine.yaml"
    mine.write_text("model: {}\n")
    near = type("Info", (), {"filename": str(tmp_path / "mine.safetensors")})()
    assert sd_models_config.find_checkpoint_config(checkpoint("sdxl", 8), near) == str(mine)
    assert sd_models_config.find_checkpoint_config(checkpoint("sdxl", 8, v_pred=torch.tensor(1.0)), near) == str(mine)
    with pytest.raises(edit_script.concat.ConcatError, match="odd.safetensors.*match no known edit family"):
        sd_models_config.find_checkpoint_config(checkpoint("sdxl", 8, v_pred=torch.tensor(1.0)), info("odd"))


def test_a_failing_check_falls_back_to_the_webuis_choice(edit_script, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(edit_script.concat, "classify_checkpoint", broken)  # the suite's private lib_concat
    assert sd_models_config.find_checkpoint_config(checkpoint("sdxl", 8), info("x")) == sd_models_config.config_sdxl


def concat_out(model, x, t, cond, image):
    """apply_model with c_concat, and the UNet on cat([x, image]) directly."""
    with torch.no_grad():
        out = model.apply_model(x, t, {**cond, "c_concat": [image]})
        unet = model.model.diffusion_model
        want = unet(torch.cat([x, image], 1), timesteps=t, context=cond["crossattn"], y=cond["vector"])
    return out, want


def test_setup_on_load_and_exact_teardown(edit_script):
    glue = edit_script.glue_edit
    model = edit_model("sdxl")
    fresh = sorted(model.__dict__)
    assert load_checkpoint(model, "tiny_ip2p").endswith("sd_xl_instruct_pix2pix.yaml")
    assert model.cond_stage_key == "edit" and model.hdsuite_edit.family.name == SDXL_IP2P.name
    assert getattr(model, "create_denoiser", None) is None
    cond = model.get_learned_conditioning(["a cat"])
    x, image, t = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8), torch.tensor([500.0])
    out, want = concat_out(model, x, t, cond, image)
    assert torch.equal(out, want)
    # rows and size fitted to x (skip-uncond rows, hires crop)
    wide = torch.cat([image, torch.randn(1, 4, 8, 8)])
    with torch.no_grad():
        torch.testing.assert_close(model.apply_model(x, t, {**cond, "c_concat": [wide]}), out)

    # the same object reloaded from a CosXL Edit checkpoint (same config on the WebUI's side: weights loaded into it)
    model.cond_stage_key = "txt"  # sd_models_xl.extend_sdxl on every weight load
    load_checkpoint(model, "tiny_cosxl", **COSXL_KEYS)
    denoiser = model.create_denoiser()
    assert isinstance(denoiser, edit_script.concat.EDMVDenoiser) and float(denoiser.sigma_max) == pytest.approx(120.0)
    assert model.hdsuite_edit.family.name == COSXL_EDIT.name
    model.cond_stage_key = "txt"
    load_checkpoint(model, "tiny_ip2p")  # back to ip2p: no EDM denoiser left behind
    assert "create_denoiser" not in model.__dict__

    glue.teardown(model)
    assert sorted(model.__dict__) == sorted(set(fresh) | {"used_config", "sd_checkpoint_info", "sd_model_checkpoint",
                                                          "get_learned_conditioning", "cond_stage_model_empty_prompt"})
    assert model.cond_stage_key == "txt"


def test_other_models_are_untouched_by_the_load_callback(edit_script):
    for model in (make_ldm("sdxl"), make_ldm("sd15", in_channels=8, cond_stage_key="edit")):
        before = dict(model.__dict__)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        load_checkpoint(model, f"plain_{id(model)}")
        after = {k: v for k, v in model.__dict__.items() if k not in ("used_config", "sd_checkpoint_info",
                                                                         "sd_model_checkpoint",
                                                                         "get_learned_conditioning",
                                                                         "cond_stage_model_empty_prompt")}
        assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)
        now = model.state_dict()
        assert all(torch.equal(v, now[k]) for k, v in state.items())


def test_script_unload_removes_hook_and_setup(edit_script):
    model = edit_model("sdxl")
    load_checkpoint(model, "tiny_ip2p")
    assert shared.sd_model is model and model.cond_stage_key == "edit"
    original = sd_models_config.find_checkpoint_config.__wrapped__
    from modules import script_callbacks
    script_callbacks.script_unloaded_callback()
    assert sd_models_config.find_checkpoint_config is original
    assert model.cond_stage_key == "txt" and "apply_model" not in model.__dict__
    load_model("sd15")
    assert sd_models.select_checkpoint() is None
