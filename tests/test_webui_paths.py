"""The suite installed, used the way the real WebUI v1.10.1 feeds scripts: the API path (defaults built once at
start-up from the real gradio components' `.value`, `alwayson_scripts` args written over them) and the UI path (the
components' values as gradio sends them). With every feature off, txt2img and img2img are bit-identical to a WebUI
without the suite, whatever the IC-Light folder holds (missing, empty, files present, a file deleted after start-up).
"""
import os

import pytest
import torch

from modules import script_callbacks, scripts, shared
from modules.api.api import Api
from modules.ui_submit import submitted_script_args

from support.generation import img2img, load_model, reset_host, txt2img
from support.iclight_fixtures import write_offset_file
from support.scripts_loader import load_script, unload_callbacks

SCRIPT_FILES = ("hidiffusion.py", "cfgpp_samplers.py", "iclight.py", "edit_models.py")
REQUEST = dict(prompt="a cat", negative_prompt="blurry", seed=1, steps=3, cfg_scale=7.0, width=64, height=64,
               sampler_name="Euler", scheduler="Automatic")
I2I = dict(REQUEST, denoising_strength=0.6)


@pytest.fixture
def suite(tmp_path):
    """The three script files loaded as the WebUI loads them, IC-Light looking at `tmp_path/ic-light` (absent)."""
    reset_host()
    shared.cmd_opts.iclight_dir = str(tmp_path / "ic-light")
    modules = {name: load_script(name) for name in SCRIPT_FILES}
    load_model("sd15")
    yield modules
    modules["iclight.py"].MERGER.restore()
    modules["hidiffusion.py"].CONTROLLER.release()
    modules["edit_models.py"].glue_edit.uninstall()
    for name in SCRIPT_FILES:
        unload_callbacks(name)
    del shared.cmd_opts.iclight_dir
    reset_host()


def runners(modules):
    """One ScriptRunner per tab, with its UI built (args_from/args_to from the real gradio components)."""
    def always_on():
        return [modules["hidiffusion.py"].HiDiffusionScript(), modules["iclight.py"].ICLightScript(),
                modules["edit_models.py"].EditModelScript()]
    return scripts.ScriptRunner(always_on(), is_img2img=False), scripts.ScriptRunner(always_on(), is_img2img=True)


def baselines():
    """The same requests on a WebUI without the suite (fresh identical tiny model each time)."""
    load_model("sd15")
    plain_t2i = txt2img(**REQUEST).latents
    load_model("sd15")
    plain_i2i = img2img(**I2I).latents
    load_model("sd15")
    return plain_t2i, plain_i2i


def assert_untouched(result, plain):
    assert torch.equal(result.latents, plain)
    assert not any(k.startswith(("HiDiffusion", "IC-Light", "Edit model")) for k in result.extra_generation_params)
    assert not scripts.reported_errors and not script_callbacks.reported_errors


def fill_folder(folder):
    os.makedirs(folder, exist_ok=True)
    fbc, _ = write_offset_file(folder, "iclight_sd15_fbc.safetensors", in_channels=12, seed=6)
    fc, _ = write_offset_file(folder, "iclight_sd15_fc.safetensors", in_channels=8, seed=5)
    return fc, fbc


@pytest.mark.parametrize("folder_state", ["missing", "empty", "files", "file deleted after start-up"])
def test_api_and_ui_with_every_feature_off_are_bit_identical(suite, folder_state):
    plain_t2i, plain_i2i = baselines()
    folder = shared.cmd_opts.iclight_dir
    if folder_state == "empty":
        os.makedirs(folder)
    elif folder_state != "missing":
        fill_folder(folder)
    t2i, i2i = runners(suite)
    api = Api(t2i, i2i)  # start-up: the default args are built now
    if folder_state == "file deleted after start-up":
        for name in os.listdir(folder):
            os.remove(os.path.join(folder, name))

    assert_untouched(api.text2imgapi(dict(REQUEST)), plain_t2i)
    assert_untouched(api.img2imgapi(dict(I2I, init_images=[_init_image()])), plain_i2i)
    # the UI path: an untouched page sends preprocess(.value) of every control
    assert_untouched(txt2img(script_args=submitted_script_args(t2i)[1:], runner=t2i, **REQUEST), plain_t2i)
    assert_untouched(img2img(script_args=submitted_script_args(i2i)[1:], runner=i2i, **I2I), plain_i2i)
    # an API caller that names a feature but leaves it off, with values its UI can produce
    off = {"HiDiffusion": {"args": [False, None, None]}, "IC-Light": {"args": [{"enabled": False, "model": None}]},
           "Edit model": {"args": [False, None, None]}}
    assert_untouched(api.text2imgapi(dict(REQUEST, alwayson_scripts=off)), plain_t2i)


def _init_image():
    from support.generation import gradient_image
    return gradient_image(REQUEST["width"], REQUEST["height"])


def test_default_model_is_the_fc_file_in_ui_and_api(suite):
    fc, fbc = fill_folder(shared.cmd_opts.iclight_dir)
    iclight = suite["iclight.py"]
    t2i, i2i = runners(suite)
    api = Api(t2i, i2i)
    script = next(s for s in t2i.alwayson_scripts if s.title() == "IC-Light")
    model_index = [f.name for f in iclight.SPEC.fields].index("model")
    fc_name = os.path.basename(fc)
    assert script.controls[model_index].value == fc_name, "the UI starts on the fc file (fbc sorts first)"
    assert api.default_script_arg_txt2img[script.args_from + model_index] == fc_name
    assert submitted_script_args(t2i)[script.args_from + model_index] == fc_name
    assert iclight.SPEC.parse([{"enabled": True}]).model == fc_name, "the dict form's default"
    assert iclight.SPEC.parse([True]).model == fc_name, "a short positional list's default"


def test_enabled_iclight_without_files_says_what_to_download(suite):
    t2i, i2i = runners(suite)
    api = Api(t2i, i2i)
    with pytest.raises(Exception) as info:
        api.text2imgapi(dict(REQUEST, alwayson_scripts={"IC-Light": {"args": [True]}}))
    message = str(info.value)
    assert "IC-Light" in message and "iclight_sd15_fc.safetensors" in message and "huggingface.co" in message
    assert "got None" not in message
    # the WebUI keeps running: the next plain generation is unaffected
    plain_t2i, _ = baselines()
    assert_untouched(api.text2imgapi(dict(REQUEST)), plain_t2i)


def test_api_defaults_follow_the_real_components(suite):
    """The double itself (api.py `init_default_script_args` / `init_script_args` of v1.10.1): position 0 is 0, each
    always-on script's slice holds its components' `.value`, and `alwayson_scripts` args overwrite the slice's first
    positions only (extra args are dropped)."""
    t2i, i2i = runners(suite)
    api = Api(t2i, i2i)
    defaults = api.default_script_arg_txt2img
    assert defaults[0] == 0 and len(defaults) == t2i.args_count
    for script in t2i.alwayson_scripts:
        assert defaults[script.args_from:script.args_to] == [c.value for c in script.controls]
    ic = next(s for s in t2i.alwayson_scripts if s.title() == "IC-Light")
    model_index = [f.name for f in suite["iclight.py"].SPEC.fields].index("model")
    assert defaults[ic.args_from + model_index] is None, "an empty Dropdown's value is None"
    width = ic.args_to - ic.args_from
    request = {"alwayson_scripts": {"ic-light": {"args": ["A", "B"] + ["x"] * (width + 3)}}}
    args = api.init_script_args(request, defaults, t2i)
    assert args[ic.args_from:ic.args_to] == ["A", "B"] + ["x"] * (width - 2)
    assert args[:ic.args_from] == defaults[:ic.args_from] and args[ic.args_to:] == defaults[ic.args_to:]
    with pytest.raises(Exception, match="422"):
        api.init_script_args({"alwayson_scripts": {"nope": {"args": []}}}, defaults, t2i)


def test_xyz_axes_are_registered_in_the_real_load_order(suite):
    """metadata.ini puts our scripts before xyz_grid.py, so at our import the plot is not loaded yet; the axes come
    from on_before_ui, which v1.10.1 webui()/api_only() fire after every script file is loaded."""
    import configparser
    import xyz_grid_double
    ini = configparser.ConfigParser()
    ini.read(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "metadata.ini"))
    for name in SCRIPT_FILES:
        assert ini[f"scripts/{name}"]["Before"] == "xyz_grid.py"
    scripts.scripts_data[:] = [d for d in scripts.scripts_data if d.script_class.__module__ != "xyz_grid.py"]
    for name in SCRIPT_FILES:  # our files load first ...
        unload_callbacks(name)
        suite[name] = load_script(name)
    xyz = xyz_grid_double.install()  # ... then the X/Y/Z plot
    ours = [o.label for o in xyz.axis_options if o.label.startswith(("HiDiffusion", "IC-Light", "Edit model"))]
    assert ours == [], "nothing can be registered at import time in this order"
    script_callbacks.before_ui_callback()
    labels = [o.label for o in xyz.axis_options]
    assert "HiDiffusion T1" in labels and "IC-Light Model file" in labels
    assert "Edit model Image CFG scale (txt2img)" in labels
    ours = [label for label in labels if label.startswith(("HiDiffusion", "IC-Light", "Edit model"))]
    assert len(ours) == len(set(ours))
    script_callbacks.before_ui_callback()  # Reload UI fires it again: no duplicates
    assert [o.label for o in xyz.axis_options] == labels


def test_fields_route_lists_field_names_defaults_and_iclight_files(suite):
    """`/sdapi/v1/script-info` gives control labels; our GET route gives the names the dict form takes."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    fc, fbc = fill_folder(shared.cmd_opts.iclight_dir)
    app = FastAPI()
    script_callbacks.app_started_callback(None, app)
    script_callbacks.app_started_callback(None, app)  # registered by two scripts, added once
    assert [r.path for r in app.routes].count("/hdsuite/v1/fields") == 1
    body = TestClient(app).get("/hdsuite/v1/fields").json()
    hd = {f["name"]: f for f in body["HiDiffusion"]["fields"]}
    assert list(hd)[:3] == ["enabled", "model", "rau_net"]
    assert hd["t1"]["default"] == 0.4 and hd["model"]["choices"][0] == "Auto" and hd["enabled"]["infotext"] == "HiDiffusion"
    ic = body["IC-Light"]
    assert {f["name"]: f for f in ic["fields"]}["model"]["default"] == os.path.basename(fc)
    assert sorted(ic["files"]) == sorted([os.path.basename(fc), os.path.basename(fbc)])
    assert ic["folder"] == shared.cmd_opts.iclight_dir
