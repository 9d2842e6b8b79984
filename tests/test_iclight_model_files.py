"""IC-Light's `model` argument names a file inside the IC-Light folder, nothing else (API callers must not make the
server open or probe other files); a missing/empty folder and a file deleted after start-up give clear errors."""
import os
import shutil

import pytest
import torch

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
