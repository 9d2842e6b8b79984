"""IC-Light merge: parity with the official demo's merge (diffusers), exact restore, no re-merge."""
import copy

import pytest
import torch

from lib_iclight import Merger, merge_offsets, open_offset_file, restore_all
from lib_iclight.errors import ICLightError
from support.iclight_fixtures import (base_unet, demo_merge, diffusers_twin, module_tree, state_hash, write_offset_file)
from support.tiny_models import TinyLDM, make_context

CHANNELS = {"fc": 8, "fbc": 12}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("iclight")
    out = {}
    for kind, ch in CHANNELS.items():
        out[kind] = write_offset_file(str(folder), f"iclight_sd15_{kind}.safetensors", in_channels=ch)
    out["fc_ldm"] = write_offset_file(str(folder), "fc_ldm.safetensors", in_channels=8, fmt="model.diffusion_model")
    out["fc2"] = write_offset_file(str(folder), "fc_other.safetensors", in_channels=8, seed=9)
    return out


@pytest.fixture(scope="module")
def twin():
    return diffusers_twin(base_unet())


def _inputs(channels, batch=2, seed=3):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, 8, 8, generator=gen)
    concat = torch.randn(batch, channels - 4, 8, 8, generator=gen)
    t = torch.tensor([700.0, 35.0][:batch])
    return x, concat, t, make_context("sd15", batch)


@pytest.mark.parametrize("kind", ["fc", "fbc"])
def test_parity_with_demo_merge(files, twin, kind):
    path, offsets = files[kind]
    ref = demo_merge(twin, offsets)
    unet = base_unet()
    handle = merge_offsets(unet, open_offset_file(path))
    assert handle.kind == kind and unet.input_blocks[0][0].in_channels == CHANNELS[kind]
    x, concat, t, ctx = _inputs(CHANNELS[kind])
    with torch.no_grad():
        want = ref(torch.cat([x, concat], 1), t, encoder_hidden_states=ctx).sample
        got = unet(torch.cat([x, concat], 1), t, context=ctx)
        plain = twin(x, t, encoder_hidden_states=ctx).sample
    assert want.abs().mean() > 0.01
    assert (want - plain).abs().max() > 0.02  # the offsets and the concat matter
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    handle.restore()


def test_ldm_keyed_file_equals_diffusers_keyed(files):
    a, b = base_unet(), base_unet()
    of_dif, of_ldm = open_offset_file(files["fc"][0]), open_offset_file(files["fc_ldm"][0])
    assert (of_dif.key_format, of_ldm.key_format) == ("diffusers", "ldm")
    merge_offsets(a, of_dif)
    merge_offsets(b, of_ldm)
    assert state_hash(a) == state_hash(b)
    restore_all()


def test_hybrid_wrapper_path_matches_demo(files, twin):
    """Through the model object: conditioning_key becomes 'hybrid' and c_concat reaches the UNet."""
    path, offsets = files["fbc"]
    ref = demo_merge(twin, offsets)
    ldm = TinyLDM(base_unet(), "sd15").eval()
    assert ldm.model.conditioning_key == "crossattn"
    handle = merge_offsets(ldm, open_offset_file(path))
    assert ldm.model.conditioning_key == "hybrid" and ldm.model.diffusion_model.in_channels == 12
    x, concat, t, ctx = _inputs(12)
    with torch.no_grad():
        got = ldm.apply_model(x, t, {"c_crossattn": [ctx], "c_concat": [concat]})
        want = ref(torch.cat([x, concat], 1), t, encoder_hidden_states=ctx).sample
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    handle.restore()
    assert ldm.model.conditioning_key == "crossattn" and ldm.model.diffusion_model.in_channels == 4


def _snapshot(ldm):
    x, _, t, ctx = _inputs(8)
    with torch.no_grad():
        out = ldm.apply_model(x, t, {"c_crossattn": [ctx], "c_concat": [torch.zeros(2, 4, 8, 8)]})
    return state_hash(ldm), module_tree(ldm), sorted(ldm.__dict__), ldm.model.conditioning_key, out


def _assert_same(before, after):
    assert after[0] == before[0]
    assert after[1] == before[1]
    assert after[2] == before[2]
    assert after[3] == before[3]
    assert torch.equal(after[4], before[4])


@pytest.mark.parametrize("kind", ["fc", "fbc"])
def test_restore_is_exact(files, kind):
    ldm = TinyLDM(base_unet(), "sd15").eval()
    conv = ldm.model.diffusion_model.input_blocks[0][0]
    before = _snapshot(ldm)
    merger = Merger()
    handle = merger.ensure(ldm, files[kind][0])
    assert state_hash(ldm) != before[0]
    assert all(b.device.type == "cpu" for b in handle._backups.values())
    x, concat, t, ctx = _inputs(CHANNELS[kind])
    with torch.no_grad():
        ldm.apply_model(x, t, {"c_crossattn": [ctx], "c_concat": [concat]})
    assert merger.restore() and merger.restore_count == 1
    assert ldm.model.diffusion_model.input_blocks[0][0] is conv
    _assert_same(before, _snapshot(ldm))
    assert not merger.restore()


def test_restore_after_exception_mid_sampling(files):
    ldm = TinyLDM(base_unet(), "sd15").eval()
    before = _snapshot(ldm)
    merger = Merger()
    merger.ensure(ldm, files["fc"][0])

    def boom(*_):
        raise RuntimeError("interrupted")

    hook = ldm.model.diffusion_model.middle_block.register_forward_hook(boom)
    x, concat, t, ctx = _inputs(8)
    with pytest.raises(RuntimeError, match="interrupted"), torch.no_grad():
        ldm.apply_model(x, t, {"c_crossattn": [ctx], "c_concat": [concat]})
    hook.remove()
    assert restore_all() == 1  # the next generation heals the stale merge
    _assert_same(before, _snapshot(ldm))
    assert not merger.restore()  # already healed: nothing left to do


def test_no_remerge_and_changes(files):
    ldm = TinyLDM(base_unet(), "sd15").eval()
    merger = Merger()
    h1 = merger.ensure(ldm, files["fc"][0])
    merged = state_hash(ldm)
    assert merger.ensure(ldm, files["fc"][0]) is h1 and merger.merge_count == 1
    assert state_hash(ldm) == merged  # the second call added nothing
    merger.ensure(ldm, files["fc2"][0])  # another file: restore, then merge the new one
    assert merger.merge_count == 2 and merger.restore_count == 1
    fresh = TinyLDM(base_unet(), "sd15").eval()
    merge_offsets(fresh, open_offset_file(files["fc2"][0]))
    assert state_hash(ldm) == state_hash(fresh)
    restore_all()
    # weights changed behind the merger's back (e.g. another extension): detected, re-merged
    merger = Merger()
    merger.ensure(ldm, files["fc"][0])
    with torch.no_grad():
        ldm.model.diffusion_model.out[2].weight.add_(1.0)
    assert not merger.handle.is_intact()
    merger.ensure(ldm, files["fc"][0])
    assert merger.merge_count == 2
    merger.restore()


def test_same_path_new_content_remerges(files, tmp_path):
    import shutil
    import os
    path = str(tmp_path / "model.safetensors")
    shutil.copy(files["fc"][0], path)
    ldm = TinyLDM(base_unet(), "sd15").eval()
    merger = Merger()
    merger.ensure(ldm, path)
    shutil.copy(files["fc2"][0], path)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    merger.ensure(ldm, path)
    assert merger.merge_count == 2
    merger.restore()


def test_checkpoint_load_into_merged_model(files):
    """Loading another checkpoint into the same object (the WebUI's reload_model_weights) first restores."""
    ldm = TinyLDM(base_unet(), "sd15").eval()
    tree = module_tree(ldm)
    other = TinyLDM(base_unet(seed=4), "sd15").eval()
    merger = Merger()
    merger.ensure(ldm, files["fbc"][0])
    ldm.load_state_dict(other.state_dict(), strict=False)
    assert state_hash(ldm) == state_hash(other)
    assert module_tree(ldm) == tree and "load_state_dict" not in ldm.__dict__
    assert ldm.model.conditioning_key == "crossattn"
    merger.ensure(ldm, files["fbc"][0])  # the next generation merges into the new weights
    assert merger.merge_count == 2
    want = TinyLDM(base_unet(seed=4), "sd15").eval()
    merge_offsets(want, open_offset_file(files["fbc"][0]))
    assert state_hash(ldm) == state_hash(want)
    restore_all()


def test_failed_merge_rolls_back(files, monkeypatch):
    ldm = TinyLDM(base_unet(), "sd15").eval()
    before = _snapshot(ldm)
    of = open_offset_file(files["fc"][0])
    real = of.reader
    calls = {"n": 0}

    from contextlib import contextmanager

    @contextmanager
    def failing_reader():
        with real() as get:
            def flaky(key):
                calls["n"] += 1
                if calls["n"] == 100:
                    raise ICLightError("damaged")
                return get(key)
            yield flaky

    object.__setattr__(of, "reader", failing_reader)
    with pytest.raises(ICLightError):
        merge_offsets(ldm, of)
    _assert_same(before, _snapshot(ldm))
    assert restore_all() == 0


def test_fp16_offsets_on_fp32_model(tmp_path):
    """The official files are fp16: the sum is computed in the model's precision (as the demo's fp32 add)."""
    path, offsets = write_offset_file(str(tmp_path), "half.safetensors", 8, dtype=torch.float16)
    unet = base_unet()
    base = copy.deepcopy(unet)
    merge_offsets(unet, open_offset_file(path))
    w = unet.out[2].weight
    assert torch.equal(w, base.out[2].weight + offsets["conv_out.weight"].half().float())
    restore_all()


def test_restore_of_a_discarded_model(files):
    """The WebUI moves a replaced model to the 'meta' device; restoring it must not fail, and frees it."""
    ldm = TinyLDM(base_unet(), "sd15").eval()
    merger = Merger()
    handle = merger.ensure(ldm, files["fc"][0])
    ldm.to("meta")
    assert merger.restore() and not handle.active and handle._backups == {}
    assert ldm.model.conditioning_key == "crossattn" and "load_state_dict" not in ldm.__dict__


def test_merge_and_restore_callbacks(files):
    """before_merge / after_restore run on every (re-)merge and every restore, whatever triggers it."""
    events = []
    ldm = TinyLDM(base_unet(), "sd15").eval()
    unet = ldm.model.diffusion_model
    merger = Merger(before_merge=lambda u: events.append(("merge", u is unet)),
                    after_restore=lambda u: events.append(("restore", u is unet)))
    merger.ensure(ldm, files["fc"][0])
    merger.ensure(ldm, files["fc"][0])
    ldm.load_state_dict(TinyLDM(base_unet(seed=4), "sd15").state_dict())  # checkpoint change
    merger.ensure(ldm, files["fc"][0])
    merger.restore()
    assert events == [("merge", True), ("restore", True), ("merge", True), ("restore", True)]

