"""IC-Light's `model` argument names a file inside the IC-Light folder, nothing else (API callers must not make the
server open or probe other files); a missing/empty folder and a file deleted after start-up give clear errors."""
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from modules import shared

from support.iclight_fixtures import state_hash
from support.iclight_webui import UNetSpy, fc_on, folder, generate, host, script  # noqa: F401 (pytest fixtures)

FIELD = "IC-Light: argument 'model' (Model file)"


def _refused(script, name):
    model = shared.sd_model
    before = state_hash(model)
    with UNetSpy() as spy, pytest.raises(ValueError) as info:
        generate(script, fc_on(model=name))
    assert spy.calls == [] and state_hash(model) == before
    return str(info.value)


def test_paths_outside_the_folder_get_the_unknown_model_error(script, folder, tmp_path):
    outside = tmp_path / "outside.safetensors"
    shutil.copy(folder.fc, outside)  # a valid fc file, outside the folder
    reference = _refused(script, "absent.safetensors").replace("absent.safetensors", "<name>")
    assert reference.startswith(FIELD) and "unknown model" in reference
    assert folder.path in reference and "fc.safetensors" in reference and "subfolders" in reference
    relative = os.path.relpath(outside, folder.path)
    for name in (str(outside), str(tmp_path / "absent.safetensors"), relative, "../" + os.path.basename(outside),
                 folder.fc):
        assert _refused(script, name).replace(name, "<name>") == reference, name
    generate(script, fc_on(), steps=2)  # the folder's own file still works


def test_subfolders_are_fine(script, folder):
    sub = os.path.join(folder.path, "relight")
    os.makedirs(sub, exist_ok=True)
    shutil.copy(folder.fc, os.path.join(sub, "mine.safetensors"))
    try:
        assert "relight/mine.safetensors" in script.model_choices()
        with UNetSpy() as spy:
            generate(script, fc_on(model="relight/mine.safetensors"), steps=2)
        assert spy.calls and spy.calls[0].x.shape[1] == 8
    finally:
        shutil.rmtree(sub)


@pytest.mark.parametrize("case", ["missing folder", "empty folder"])
def test_no_files_enabled_says_where_files_go(script, tmp_path, case):
    empty = tmp_path / "ic-light"
    if case == "empty folder":
        empty.mkdir()
    shared.cmd_opts.iclight_dir = str(empty)
    message = _refused(script, "fc.safetensors")
    assert message.startswith(FIELD) and "no IC-Light model files" in message and str(empty) in message
    assert "iclight_sd15_fc.safetensors" in message and "huggingface.co/lllyasviel/ic-light" in message
    default = _refused(script, "")  # nothing to default to
    assert "No IC-Light model file chosen" in default and str(empty) in default and "huggingface.co" in default


def test_file_deleted_after_start_up(script, folder):
    extra = os.path.join(folder.path, "gone.safetensors")
    shutil.copy(folder.fc, extra)
    choices = script.model_choices()
    assert "gone.safetensors" in choices
    os.remove(extra)
    message = _refused(script, "gone.safetensors")
    assert message.startswith(FIELD) and "unknown model 'gone.safetensors'" in message
    assert "fc.safetensors" in message
    latents = generate(script, {"enabled": False}, steps=2).latents
    assert torch.isfinite(latents).all()


def test_only_an_fbc_file_runs_with_every_default(script, tmp_path):
    """With only an fbc file, the defaults (model: that file; background source: the default one) must run without
    a background upload: the default source uses an uploaded background if there is one, else the demo's Ambient
    (grey 64). Choosing 'Use Background Image' explicitly still asks for the upload."""
    from support.iclight_fixtures import write_offset_file
    from support.iclight_webui import b64, demo_foreground, encode, rgba_image
    only = tmp_path / "only-fbc"
    only.mkdir()
    write_offset_file(str(only), "iclight_sd15_fbc.safetensors", in_channels=12, seed=6)
    shared.cmd_opts.iclight_dir = str(only)
    model = shared.sd_model
    with UNetSpy() as spy:
        result = generate(script, {"enabled": True, "foreground": b64(rgba_image(1))}, steps=2)
    fg = encode(model, [demo_foreground(rgba_image(1))])[0]
    ambient = encode(model, [np.full((64, 64, 3), 64, np.uint8)])[0]
    assert spy.calls and all(torch.allclose(row, torch.cat([fg, ambient]), atol=1e-6)
                             for c in spy.calls for row in c.x[:, 4:])
    assert "IC-Light model: iclight_sd15_fbc.safetensors" in result.infotexts[0]

    background = Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    with UNetSpy() as spy:
        generate(script, {"enabled": True, "foreground": b64(rgba_image(1)), "background": b64(background)}, steps=2)
    uploaded = encode(model, [np.array(background)])[0]
    assert all(torch.allclose(row[4:], uploaded, atol=1e-6) for c in spy.calls for row in c.x[:, 4:])
    with pytest.raises(ValueError, match="needs a background image: upload one"):
        generate(script, {"enabled": True, "foreground": b64(rgba_image(1)), "bg_source": "Use Background Image"})
