"""Bad model files and bases: clear ICLightError naming the fix, raised before the model is touched."""
import os

import pytest
import torch
from safetensors.torch import save_file

from lib_iclight import ICLightError, Merger, merge_offsets, open_offset_file, resolve_model_path
from support.iclight_fixtures import base_unet, module_tree, state_hash, write_offset_file
from support.tiny_models import TinyLDM


@pytest.fixture(scope="module")
def fc_file(tmp_path_factory):
    return write_offset_file(str(tmp_path_factory.mktemp("ic")), "iclight_sd15_fc.safetensors", 8)[0]


def test_missing_file_names_folder_and_download(tmp_path):
    (tmp_path / "other.safetensors").write_bytes(b"")
    with pytest.raises(ICLightError) as err:
        resolve_model_path("iclight_sd15_fc", str(tmp_path))
    msg = str(err.value)
    assert str(tmp_path) in msg and "huggingface.co/lllyasviel/ic-light" in msg
    assert "iclight_sd15_fc.safetensors" in msg and "other.safetensors" in msg
    with pytest.raises(ICLightError, match="not found"):
        open_offset_file(str(tmp_path / "nope.safetensors"))
    with pytest.raises(ICLightError, match="No IC-Light model file chosen"):
        resolve_model_path("", str(tmp_path))


def test_resolve_by_stem_and_rejects_pickles(tmp_path, fc_file):
    target = tmp_path / "iclight_sd15_fc.safetensors"
    target.write_bytes(open(fc_file, "rb").read())
    assert resolve_model_path("iclight_sd15_fc", str(tmp_path)) == str(target)
    (tmp_path / "model.pt").write_bytes(b"\x80\x04")
    with pytest.raises(ICLightError, match="only safetensors"):
        resolve_model_path("model.pt", str(tmp_path))


def _unknown_message(name, folder):
    with pytest.raises(ICLightError) as err:
        resolve_model_path(name, folder, where="IC-Light: argument 'model' (Model file)")
    return str(err.value).replace(name, "<name>")


def test_only_files_inside_the_folder_are_accepted(tmp_path, fc_file):
    """Security: an API caller must not make the server open, or probe the existence of, files outside the folder.
    Absolute paths and '..' get the same 'unknown model' message whether or not the file exists."""
    folder = tmp_path / "ic-light"
    (folder / "sub").mkdir(parents=True)
    data = open(fc_file, "rb").read()
    (folder / "fc.safetensors").write_bytes(data)
    (folder / "sub" / "fbc_v2.safetensors").write_bytes(data)
    (tmp_path / "outside.safetensors").write_bytes(data)
    assert resolve_model_path("sub/fbc_v2.safetensors", str(folder)) == str(folder / "sub" / "fbc_v2.safetensors")
    assert resolve_model_path("sub\\fbc_v2", str(folder)) == str(folder / "sub" / "fbc_v2.safetensors")
    from lib_iclight import list_model_files
    assert list_model_files(str(folder)) == ["fc.safetensors", "sub/fbc_v2.safetensors"]

    reference = _unknown_message("missing.safetensors", str(folder))
    assert "unknown model" in reference and "argument 'model' (Model file)" in reference
    assert str(folder) in reference and "fc.safetensors, sub/fbc_v2.safetensors" in reference
    assert "huggingface.co/lllyasviel/ic-light" in reference and "subfolders" in reference
    outside = str(tmp_path / "outside.safetensors")
    for name in (outside, str(tmp_path / "absent.safetensors"), str(folder / "fc.safetensors"),
                 "../outside.safetensors", "../absent.safetensors", "sub/../../outside", "./fc.safetensors",
                 "..\\outside.safetensors", "sub/../fc.safetensors", "~/outside.safetensors"):
        assert _unknown_message(name, str(folder)) == reference, name


def test_missing_or_empty_folder_and_deleted_files(tmp_path, fc_file):
    missing = _unknown_message("mine.safetensors", str(tmp_path / "nowhere"))
    assert "no IC-Light model files" in missing and str(tmp_path / "nowhere") in missing
    assert "iclight_sd15_fc.safetensors" in missing and "huggingface.co/lllyasviel/ic-light" in missing
    (tmp_path / "empty").mkdir()
    assert "no IC-Light model files" in _unknown_message("mine.safetensors", str(tmp_path / "empty"))
    folder = tmp_path / "ic"
    folder.mkdir()
    (folder / "fc.safetensors").write_bytes(open(fc_file, "rb").read())
    (folder / "fbc.safetensors").write_bytes(open(fc_file, "rb").read())
    assert resolve_model_path("fbc.safetensors", str(folder))
    os.remove(folder / "fbc.safetensors")  # listed at start-up, deleted since
    message = _unknown_message("fbc.safetensors", str(folder))
    assert "unknown model" in message and "Files there: fc.safetensors." in message


def test_corrupt_and_truncated_files(tmp_path, fc_file):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(ICLightError, match="damaged or not a safetensors file.*download it again"):
        open_offset_file(str(junk))
    data = open(fc_file, "rb").read()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ICLightError, match="damaged"):
        open_offset_file(str(cut))


def test_wrong_content(tmp_path):
    text = tmp_path / "clip.safetensors"
    save_file({"text_model.encoder.layers.0.mlp.fc1.weight": torch.zeros(2, 2)}, str(text))
    with pytest.raises(ICLightError, match="not an IC-Light UNet offset file.*text_model"):
        open_offset_file(str(text))
    four = write_offset_file(str(tmp_path), "four.safetensors", in_channels=4)[0]
    with pytest.raises(ICLightError, match="takes 4 input channels; IC-Light files take 8 .* or 12"):
        open_offset_file(four)


def test_keys_that_do_not_match_the_unet(tmp_path, fc_file):
    from safetensors.torch import load_file
    tensors = load_file(fc_file)
    extra = dict(tensors)
    extra["down_blocks.0.attentions.2.proj_in.weight"] = torch.zeros(32, 32, 1, 1)  # no such block
    bad = tmp_path / "extra.safetensors"
    save_file(extra, str(bad))
    with pytest.raises(ICLightError, match="not an IC-Light UNet offset file: 1 key.*attentions.2.proj_in"):
        open_offset_file(str(bad))
    extra = dict(tensors)
    extra["down_blocks.0.attentions.0.proj_extra.weight"] = torch.zeros(32, 32, 1, 1)  # block exists, key does not
    save_file(extra, str(bad))
    unet = base_unet()
    before = state_hash(unet)
    with pytest.raises(ICLightError, match="1 of its keys are not in the model, e.g. down_blocks.0.attentions.0.proj_e"):
        merge_offsets(unet, open_offset_file(str(bad)))
    fewer = {k: v for k, v in tensors.items() if "mid_block" not in k}
    save_file(fewer, str(tmp_path / "fewer.safetensors"))
    with pytest.raises(ICLightError, match="lacks .* keys, e.g. middle_block"):
        merge_offsets(unet, open_offset_file(str(tmp_path / "fewer.safetensors")))
    wrong = dict(tensors)
    wrong["conv_out.weight"] = torch.zeros(4, 32, 1, 1)
    save_file(wrong, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(ICLightError, match="shape mismatches, e.g. conv_out.weight"):
        merge_offsets(unet, open_offset_file(str(tmp_path / "wrong.safetensors")))
    assert state_hash(unet) == before


@pytest.mark.parametrize("family,kwargs,match", [
    ("sdxl", {}, "loaded one is SDXL .*context width 2048.*Load an SD 1.5 checkpoint"),
    ("sd21", {}, "loaded one is SD 2.x .*context width 1024"),
    ("sd15", {"in_channels": 9}, "takes 9 input channels \\(inpaint\\)"),
])
def test_wrong_base_model(fc_file, family, kwargs, match):
    ldm = TinyLDM(base_unet(family, **kwargs), family).eval()
    before, tree = state_hash(ldm), module_tree(ldm)
    merger = Merger()
    with pytest.raises(ICLightError, match=match):
        merger.ensure(ldm, fc_file)
    assert state_hash(ldm) == before and module_tree(ldm) == tree and merger.handle is None
    # the next generation, on a good base, is unaffected
    good = TinyLDM(base_unet(), "sd15").eval()
    merger.ensure(good, fc_file)
    assert merger.merge_count == 1
    merger.restore()


def test_error_class_is_a_value_error():
    assert issubclass(ICLightError, ValueError)


def test_kind_comes_from_conv_in_not_the_name(tmp_path):
    misnamed = write_offset_file(str(tmp_path), "iclight_sd15_fc.safetensors", in_channels=12)[0]
    of = open_offset_file(misnamed)
    assert (of.kind, of.in_channels) == ("fbc", 12)
    prefixed = write_offset_file(str(tmp_path), "fbc_named.safetensors", in_channels=8, fmt="diffusion_model")[0]
    of = open_offset_file(prefixed)
    assert (of.kind, of.in_channels, of.key_format) == ("fc", 8, "ldm")


def test_fp8_weights_are_refused_untouched(fc_file):
    """The WebUI's FP8 weight storage keeps Conv2d/Linear weights as float8_e4m3fn: in-place adds fail there and the
    offsets are finer than FP8's precision, so the merge refuses before changing anything."""
    unet = base_unet()
    for module in unet.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            module.to(torch.float8_e4m3fn)
    before, tree = state_hash(unet), module_tree(unet)
    with pytest.raises(ICLightError, match="float8_e4m3fn \\(FP8\\).*Load it in fp16/fp32"):
        merge_offsets(unet, open_offset_file(fc_file))
    assert state_hash(unet) == before and module_tree(unet) == tree
