"""Edit model settings: the real gradio UI, the API (positional and dict, errors naming the field, disabled inert
whatever the UI gives), infotext and paste, X/Y/Z axes (ours in txt2img, the WebUI's "Image CFG Scale" in img2img)
on an SDXL edit model, each cell as if run alone."""
import contextlib

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

import xyz_grid_double
from modules import infotext_utils, processing, scripts, shared
from support.edit_models import edit_model, load_checkpoint
from support.generation import DEFAULTS, gradient_image, reset_host
from support.iclight_webui import b64
from support.scripts_loader import load_script, unload_callbacks

IMAGE = b64(Image.fromarray(np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8)))


@pytest.fixture
def edit():
    reset_host()
    script = load_script("edit_models.py")
    yield script
    unload_callbacks("edit_models.py")
    script.glue_edit.uninstall()
    reset_host()


def test_ui_controls_and_defaults(edit):
    script = edit.EditModelScript()
    with gr.Blocks():
        controls = script.ui(False)
    assert [type(c).__name__ for c in controls] == ["InputAccordion", "Image", "Slider"]
    assert [c.value for c in controls] == [False, None, 1.5]
    assert [key for _, key in script.infotext_fields if isinstance(key, str)] == ["Edit model image CFG scale"]


def test_api_forms_and_errors(edit):
    spec = edit.SPEC
    assert spec.parse([{"enabled": True, "image_cfg_scale": 2}]).image_cfg_scale == 2.0
    assert spec.parse([True, None, 0.5]) == spec.parse([{"enabled": True, "image_cfg_scale": 0.5}])
    with pytest.raises(ValueError, match=r"Edit model: argument 'image_cfg_scale' .* between 0.0 and 3.0"):
        spec.parse([{"enabled": True, "image_cfg_scale": 7}])
    with pytest.raises(ValueError, match="Edit model: unknown argument 'image_cfg'"):
        spec.parse([{"enabled": True, "image_cfg": 2}])
    with pytest.raises(ValueError, match=r"argument 'image' \(Input image\) is not a base64-encoded image"):
        spec.parse([{"enabled": True, "image": "not an image"}])
    # disabled: whatever the UI can give is accepted and nothing is checked
    assert spec.parse([False, "not an image", "abc"]) == spec.defaults()
    assert spec.parse([None, None, None]) == spec.defaults()


def _txt2img_p(edit, values, **fields):
    p = processing.StableDiffusionProcessingTxt2Img(**{**DEFAULTS, "steps": 3, **fields})
    p.scripts = scripts.ScriptRunner([edit.EditModelScript()], arg_counts=[3])
    p.script_args = [0, *values]
    return p


def test_infotext_round_trip_and_paste(edit):
    load_checkpoint(edit_model("sdxl"), "sdxl_ip2p")
    p = _txt2img_p(edit, [True, IMAGE, 1.3])
    with contextlib.closing(p):
        result = processing.process_images(p)
    text = result.infotexts[0]
    params = infotext_utils.parse_generation_parameters(text)
    assert params["Edit model"] == "True" and params["Edit model image CFG scale"] == "1.3"
    assert params["Edit model family"] == "InstructPix2Pix (SDXL)" and params["Image CFG scale"] == "1.3"
    assert edit.SPEC.from_infotext(params) == edit.SPEC.replace(edit.SPEC.defaults(), enabled=True,
                                                                image_cfg_scale=1.3)
    script = edit.EditModelScript()
    with gr.Blocks():
        script.ui(False)
    assert infotext_utils.paste(text, script.infotext_fields) == [True, 1.3]
    without = "a cat\nSteps: 3, Sampler: Euler, CFG scale: 7"
    assert infotext_utils.paste(without, script.infotext_fields) == [False, None]


def _run_grid_cells(xyz, make_p, axis, values, is_img2img=False):
    cells = xyz_grid_double.run_grid(xyz, make_p(), (axis, values), is_img2img=is_img2img)
    assert all(c.error is None for c in cells), [c.error for c in cells]
    for cell in cells:
        alone = make_p()
        xyz_grid_double.find_axis(xyz, axis, is_img2img).apply(alone, cell.x, values)
        with contextlib.closing(alone):
            solo = processing.process_images(alone)
        assert cell.processed.infotexts[0] == solo.infotexts[0] and torch.equal(cell.processed.latents, solo.latents)
    return cells


def test_xyz_axes_on_an_sdxl_edit_model(edit):
    xyz = xyz_grid_double.install()
    edit.register_axes()
    load_checkpoint(edit_model("sdxl"), "sdxl_ip2p")
    cells = _run_grid_cells(xyz, lambda: _txt2img_p(edit, [True, IMAGE, 1.5]), "Edit model Image CFG scale (txt2img)",
                            ["1.2", "2.0"])
    assert ["Edit model image CFG scale: 1.2" in c.processed.infotexts[0] for c in cells] == [True, False]
    assert not torch.equal(cells[0].processed.latents, cells[1].processed.latents)

    def img2img_p():  # the accordion off (its UI defaults): SDXL edit models run in img2img anyway
        p = processing.StableDiffusionProcessingImg2Img(**{**DEFAULTS, "steps": 3, "denoising_strength": 0.6,
                                                           "init_images": [gradient_image(64, 64)],
                                                           "image_cfg_scale": 1.5})
        p.scripts = scripts.ScriptRunner([edit.EditModelScript()], arg_counts=[3])
        p.script_args = [0, False, None, 1.5]
        return p

    cells = _run_grid_cells(xyz, img2img_p, "Image CFG Scale", ["1.1", "2.5"], is_img2img=True)
    assert ["Image CFG scale: 1.1" in c.processed.infotexts[0] for c in cells] == [True, False]
    assert not torch.equal(cells[0].processed.latents, cells[1].processed.latents)
    assert shared.sd_model.cond_stage_key == "edit"
