"""The SD x4 upscaler as a WebUI upscaler, through the host double: registered by `modelloader.load_upscalers`
from the folder of `--sdx4-models-path`, selectable by name in Extras (API `upscaler_1`), hires fix (`hr_upscaler`)
and the API's upscaler list; prompts/seeds from the generation in hires fix and from the settings in Extras; the
main checkpoint untouched; unloading frees the models; bad files/settings/inputs stop with a clear message before
sampling, and the next generation is unaffected."""
import argparse
import base64
import gc
import importlib.util
import io
import os
import weakref

import numpy as np
import pytest
import torch
from PIL import Image

from modules import modelloader, processing, scripts, shared, upscaler as host_upscaler
from modules.api.api import Api

from lib_concat.upscale_x4 import X4Settings, X4Upscaler
from lib_concat.x4_models import load_models
from support.generation import load_model, reset_host, txt2img
from support.scripts_loader import load_script, unload_callbacks
from support.x4_fixtures import tiny_x4_state_dict, tokenize, write_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT_FILE = "upscaler_x4.py"
NAME = "SD x4 (x4-upscaler-ema)"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("sd-x4-upscaler")
    sd = tiny_x4_state_dict()
    write_checkpoint(path / "x4-upscaler-ema.safetensors", sd)
    (path / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    depth = dict(sd, **{"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(32, 5, 3, 3)})
    write_checkpoint(path / "sub" / "depth.safetensors" if (path / "sub").mkdir() is None else None, depth)
    (path / "notes.txt").write_text("not a model")
    return path


def preload_args(argv):
    spec = importlib.util.spec_from_file_location("suite_preload", os.path.join(ROOT, "preload.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parser = argparse.ArgumentParser()
    module.preload(parser)
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def script(folder):
    # the flag as the WebUI parses it (preload.py), read by load_upscalers under the class-name rule
    shared.cmd_opts.sdx4_models_path = preload_args(["--sdx4-models-path", str(folder)]).sdx4_models_path
    module = load_script(SCRIPT_FILE)
    module.tokenizer = lambda: tokenize  # open_clip.tokenize in the WebUI (not installed here)
    modelloader.load_upscalers()
    yield module
    module.unload()
    shared.sd_upscalers = host_upscaler.builtin_upscalers()
    unload_callbacks(SCRIPT_FILE)
    del shared.cmd_opts.sdx4_models_path


@pytest.fixture(autouse=True)
def host(script):
    reset_host()
    load_model("sd15")
    shared.opts.data.update(sdx4_steps=2, sdx4_tile=64, sdx4_tile_overlap=16, sdx4_seed=5)
    yield
    script.unload()
    assert not scripts.reported_errors, scripts.reported_errors
    reset_host()


def b64(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def picture(w=40, h=24, seed=0):
    return Image.fromarray((np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8))


def runners(script):
    return (scripts.ScriptRunner([script.SdX4Prompts()], is_img2img=False),
            scripts.ScriptRunner([script.SdX4Prompts()], is_img2img=True))


class Spy:
    """Records every X4Upscaler.upscale call (prompt, negative prompt, settings) and its result."""

    def __init__(self, monkeypatch, script):
        self.calls = []
        cls = script.concat.X4Upscaler  # the script's copy of lib_concat (hdsuite_imports)
        original = cls.upscale

        def upscale(this, image, prompt="", negative_prompt="", settings=X4Settings()):
            out = original(this, image, prompt, negative_prompt, settings)
            self.calls.append((prompt, negative_prompt, settings, image.copy(), out))
            return out
        monkeypatch.setattr(cls, "upscale", upscale)


# --- registration ---------------------------------------------------------------------------------------------
def test_listed_after_the_builtin_upscalers_one_per_file_with_the_flag_folder(script, folder):
    names = [u.name for u in shared.sd_upscalers]
    assert names == ["None", "Lanczos", "Nearest", "SD x4 (broken)", "SD x4 (sub/depth)", NAME]
    ours = [u for u in shared.sd_upscalers if u.name.startswith("SD x4")]
    assert {u.scaler.user_path for u in ours} == {str(folder)} and all(u.scale == 4 for u in ours)
    assert ours[-1].data_path == str(folder / "x4-upscaler-ema.safetensors")
    api = Api(*runners(script))
    listed = {u["name"]: u for u in api.get_upscalers()}
    assert listed[NAME]["model_path"] == ours[-1].data_path and listed[NAME]["scale"] == 4


def test_default_folder_is_models_sd_x4_upscaler(script, monkeypatch):
    monkeypatch.setattr(shared.cmd_opts, "sdx4_models_path", None)
    assert preload_args([]).sdx4_models_path is None
    assert script.SdX4Upscaler().model_path == os.path.join(shared.models_path, "sd-x4-upscaler")


def test_reloading_the_script_keeps_one_entry_per_file(script, folder):
    """Reload UI runs the script file again (a second class object); load_upscalers keeps the newest class only,
    and the old module is freed once its callbacks are gone (nothing of ours keeps it)."""
    module, ours = load_script(SCRIPT_FILE), None
    try:
        modelloader.load_upscalers()
        ours = [u for u in shared.sd_upscalers if u.name.startswith("SD x4")]
        assert len(ours) == 3 and all(type(u.scaler) is module.SdX4Upscaler for u in ours)
    finally:  # drop the reloaded copy, so the fixture's module is the registered one again
        unload_callbacks(SCRIPT_FILE)
        shared.sd_upscalers = host_upscaler.builtin_upscalers()
        reloaded = weakref.ref(module.SdX4Upscaler)
        del module, ours
        gc.collect()
        modelloader.load_upscalers()
    assert reloaded() is None
    assert type(next(u for u in shared.sd_upscalers if u.name == NAME).scaler) is script.SdX4Upscaler


# --- Extras -------------------------------------------------------------------------------------------------------
def test_extras_by_name_uses_the_settings_prompt_and_seed(script, folder, monkeypatch):
    spy = Spy(monkeypatch, script)
    shared.opts.data.update(sdx4_prompt="a sharp photo", sdx4_negative_prompt="jpeg", sdx4_noise_level=40)
    api = Api(*runners(script))
    image = picture()
    out = api.extras_single_image_api({"image": b64(image), "upscaler_1": NAME, "upscaling_resize": 4})["image"]
    assert out.size == (160, 96)
    (prompt, negative, settings, _, result), = spy.calls
    assert (prompt, negative) == ("a sharp photo", "jpeg")
    assert (settings.seed, settings.noise_level, settings.steps) == (5, 40, 2)
    reference = X4Upscaler(load_models(str(folder / "x4-upscaler-ema.safetensors")), tokenize)
    assert np.array_equal(np.asarray(out), np.asarray(reference.upscale(image, "a sharp photo", "jpeg", settings)))
    # scale 2: one 4x pass, then the WebUI's LANCZOS resize to the requested size
    half = api.extras_single_image_api({"image": b64(image), "upscaler_1": NAME, "upscaling_resize": 2})["image"]
    assert half.size == (80, 48)


# --- hires fix ----------------------------------------------------------------------------------------------------
def unet_hash(model):
    return [p.detach().clone() for p in model.parameters()]


def test_hires_fix_by_name_uses_each_images_prompt_and_seed_and_leaves_the_main_model(script, monkeypatch):
    spy = Spy(monkeypatch, script)
    model = shared.sd_model
    before, device = unet_hash(model), next(model.parameters()).device
    api = Api(*runners(script))
    res = api.text2imgapi({"prompt": ["a cat", "a dog"], "negative_prompt": "blurry", "batch_size": 2, "seed": 7,
                           "steps": 2, "width": 32, "height": 32, "enable_hr": True, "hr_scale": 2,
                           "hr_upscaler": NAME, "denoising_strength": 0.5})
    assert len(res.images) == 2 and res.images[0].size == (64, 64)
    assert [(c[0], c[1], c[2].seed) for c in spy.calls] == [("a cat", "blurry", 7), ("a dog", "blurry", 8)]
    assert all(c[3].size == (32, 32) and c[4].size == (128, 128) for c in spy.calls)
    info = res.infotexts[0]
    assert f"Hires upscaler: {NAME}" in info and "SD x4 noise level: 20" in info and "SD x4 steps: 2" in info
    assert shared.sd_model is model and next(model.parameters()).device == device
    assert all(torch.equal(a, b) for a, b in zip(before, unet_hash(model)))
    assert script._context is None  # cleared when the generation closed


def test_settings_written_to_the_infotext_paste_back_as_settings(script):
    script.on_ui_settings()
    infotext_keys = {info.infotext: key for key, info in shared.opts.data_labels.items() if info.infotext}
    values = script.settings(0)
    for key, value in script.infotext(values).items():
        assert key in infotext_keys and shared.opts.data[infotext_keys[key]] == value


def test_generations_without_the_x4_upscaler_are_untouched(script, monkeypatch):
    spy = Spy(monkeypatch, script)
    plain = txt2img(steps=2, width=32, height=32, enable_hr=True, hr_upscaler="Lanczos")
    with_script = txt2img(script_list=[script.SdX4Prompts()], steps=2, width=32, height=32, enable_hr=True,
                          hr_upscaler="Lanczos")
    assert torch.equal(plain.latents, with_script.latents) and plain.infotexts == with_script.infotexts
    assert spy.calls == [] and script._loaded == {} and script._context is None


# --- memory -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy,kept", [("Unload", False), ("Move to CPU", True), ("Keep on device", True)])
def test_after_use_policy_and_unloading_frees_the_models(script, folder, policy, kept):
    shared.opts.data["sdx4_after_use"] = policy
    scaler = next(u for u in shared.sd_upscalers if u.name == NAME)
    scaler.scaler.upscale(picture(), 4, scaler.data_path)
    assert (scaler.data_path in script._loaded) == kept
    script.loaded(scaler.data_path)
    refs = [weakref.ref(m) for m in script._loaded[scaler.data_path].models.modules()]
    script.unload()
    gc.collect()
    assert script._loaded == {} and all(r() is None for r in refs)


# --- bad inputs ---------------------------------------------------------------------------------------------------
def hires(script, name, **fields):
    return txt2img(script_list=[script.SdX4Prompts()], steps=2, width=32, height=32, enable_hr=True, hr_upscaler=name,
                   **fields)


@pytest.mark.parametrize("name,needle", [
    ("SD x4 (broken)", "broken.safetensors could not be read"),
    ("SD x4 (sub/depth)", "depth.safetensors is not the x4 upscaler: its UNet takes 5 input channels"),
])
def test_a_broken_file_stops_the_generation_before_sampling(script, name, needle):
    from support.iclight_webui import UNetSpy
    with UNetSpy() as unet:
        with pytest.raises(script.concat.ConcatError, match=needle):
            hires(script, name)
    assert unet.calls == []  # not even the first pass ran
    assert script._context is None
    good = hires(script, NAME)  # the next generation is unaffected
    assert len(good.images) == 1


def test_bad_settings_stop_the_generation_before_sampling(script):
    shared.opts.data["sdx4_noise_level"] = 400
    with pytest.raises(script.concat.ConcatError, match="setting 'noise level' must be between 0 and 350, got 400"):
        hires(script, NAME)
    shared.opts.data["sdx4_noise_level"] = 20
    assert len(hires(script, NAME).images) == 1


def test_extras_input_too_small_and_unknown_names(script):
    api = Api(*runners(script))
    with pytest.raises(script.concat.ConcatError, match="the input is 12x40 pixels; it needs at least 16x16"):
        api.extras_single_image_api({"image": b64(picture(12, 40)), "upscaler_1": NAME, "upscaling_resize": 4})
    with pytest.raises(AssertionError, match="could not find upscaler named SD x4 \\(missing\\)"):
        api.extras_single_image_api({"image": b64(picture()), "upscaler_1": "SD x4 (missing)"})
    with pytest.raises(Exception, match="could not find upscaler named SD x4 \\(missing\\)"):
        hires(script, "SD x4 (missing)")
