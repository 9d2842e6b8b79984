"""IC-Light through the WebUI host double: whole txt2img / img2img / hires generations on a tiny SD 1.5 model
with synthetic offset files (diffusers key names, as the official files), checked at the UNet's input and output.

Covers the issue's must-show items at the WebUI level: parity with the demo's merge (diffusers UNet merged the
demo's way, fed what our UNet was fed), exact restore (also after a crash mid-sampling), no re-merge, concat rows
per image (batch 2, AND, batch_cond_uncond off), hires size, bad inputs stopped before sampling, API forms,
infotext/paste, UI, X/Y/Z (LoRA: test_iclight_lora.py)."""
import os

import gradio as gr
import numpy as np
import pytest
import torch

from modules import infotext_utils, processing, script_callbacks, shared

import xyz_grid_double
from lib_iclight.images import resize_and_center_crop
from lib_iclight import remover_available
from lib_iclight.detail import restore_detail
from support.generation import load_model, txt2img
from support.iclight_fixtures import demo_merge, diffusers_twin, module_tree, state_hash
from support.iclight_webui import (SCRIPT_FILE, UNetSpy, b64, defaults, demo_foreground, encode, fc_on,  # noqa: F401
                                   folder, generate, host, rgba_image, script)
from support.scripts_loader import load_script, unload_callbacks


# --- fixtures (folder, script, the autouse host fixture) and helpers: support/iclight_webui.py ----------------
@pytest.fixture(scope="module")
def never(script):
    """txt2img (seed 3, 3 steps) on a fresh tiny SD 1.5 model that never saw IC-Light (every test gets an
    identical fresh model from load_model)."""
    load_model("sd15")
    return txt2img(seed=3, steps=3).latents


# --- 1. parity with the demo's merge, through a whole generation ------------------------------------------------
@pytest.mark.parametrize("kind", ["fc", "fbc"])
def test_generation_matches_the_demo_merged_diffusers_unet(script, folder, kind):
    model = shared.sd_model
    reference = demo_merge(diffusers_twin(model.model.diffusion_model), folder.offsets[kind])
    fg = rgba_image(1)
    values = fc_on(model=f"{kind}.safetensors")
    if kind == "fbc":
        values["bg_source"] = "Left Light"
    with UNetSpy() as spy:
        generate(script, values, steps=3)
    assert len(spy.calls) == 3
    expected = encode(model, [demo_foreground(fg)])
    if kind == "fbc":  # the demo's left light: linspace(224, 32, W) per row, uint8
        ramp = np.tile(np.linspace(224, 32, 64), (64, 1))
        expected = torch.cat([expected, encode(model, [np.stack([ramp] * 3, -1).astype(np.uint8)])], dim=1)
    for call in spy.calls:
        assert call.x.shape[1] == 4 + expected.shape[1]
        for row in call.x[:, 4:]:  # cond and uncond rows alike
            assert torch.allclose(row, expected[0], atol=1e-6)
        with torch.no_grad():
            ref = reference(call.x, call.t, encoder_hidden_states=call.context).sample
        assert ref.abs().max() > 1e-2
        torch.testing.assert_close(call.out, ref, atol=1e-4, rtol=0)


# --- 2. restore -------------------------------------------------------------------------------------------------
def test_off_after_on_is_bit_identical_to_never_using_it(script, never):
    model = shared.sd_model
    unet_hash, tree = state_hash(model), module_tree(model)
    assert torch.equal(txt2img(seed=3, steps=3).latents, never)
    off_before = generate(script, {"enabled": False}, seed=3).latents
    assert torch.equal(never, off_before)
    on = generate(script, fc_on(), seed=3)
    generate(script, fc_on(), seed=4)
    assert not torch.equal(on.latents, never) and state_hash(model) != unet_hash
    off = generate(script, {"enabled": False}, seed=3)
    assert torch.equal(off.latents, never)
    assert state_hash(model) == unet_hash and module_tree(model) == tree
    assert model.model.conditioning_key == "crossattn" and model.model.diffusion_model.in_channels == 4
    assert "IC-Light" not in off.infotexts[0]


def test_exception_mid_sampling_then_off_is_bit_identical(script, never):
    model = shared.sd_model
    unet_hash, tree = state_hash(model), module_tree(model)
    with UNetSpy(raise_at=2):
        with pytest.raises(RuntimeError, match="mid-sampling"):
            generate(script, fc_on())
    assert state_hash(model) != unet_hash, "the crashed generation left its merge (healed by the next one)"
    off = generate(script, {"enabled": False}, seed=3)
    assert torch.equal(off.latents, never) and state_hash(model) == unet_hash and module_tree(model) == tree


def test_checkpoint_load_restores(script):
    old = shared.sd_model
    unet_hash = state_hash(old)
    generate(script, fc_on())
    assert script.MERGER.is_merged(old)
    load_model("sd15")  # on_model_loaded
    assert not script.MERGER.is_merged() and state_hash(old) == unet_hash


# --- 3. no re-merge ---------------------------------------------------------------------------------------------
def test_consecutive_generations_merge_once_and_encode_once_per_size(script):
    merges = script.MERGER.merge_count
    seen = []
    first = generate(script, fc_on(), p_hook=seen.append)
    second = generate(script, fc_on(), p_hook=seen.append)
    assert script.MERGER.merge_count == merges + 1
    assert torch.equal(first.latents, second.latents)
    assert [p.iclight_run.provider.encodes for p in seen] == [1, 1]
    generate(script, fc_on(model="fbc.safetensors", bg_source="Ambient"))
    assert script.MERGER.merge_count == merges + 2, "another file re-merges"


# --- 4. concat rows per image -----------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_cond_uncond", [False, True])
def test_each_image_sees_its_own_foreground_in_cond_and_uncond_rows(script, batch_cond_uncond):
    shared.opts.batch_cond_uncond = batch_cond_uncond
    model = shared.sd_model
    fgs = [rgba_image(1), rgba_image(2)]
    expected = encode(model, [demo_foreground(f) for f in fgs])
    assert not torch.allclose(expected[0], expected[1])
    values = fc_on(foreground=[b64(f) for f in fgs])
    with UNetSpy() as spy:
        generate(script, values, prompt="a cat AND a dog", batch_size=2, steps=3)
    # per step the denoiser feeds rows [img0 part0, img0 part1, img1 part0, img1 part1, uncond img0, uncond img1]
    per_step = 1 if batch_cond_uncond else 3
    assert len(spy.calls) == 3 * per_step
    image_of_row = [0, 0, 1, 1, 0, 1]
    for step in range(3):
        x = torch.cat([c.x for c in spy.calls[step * per_step:(step + 1) * per_step]])
        assert x.shape[0] == 6
        for row, image in enumerate(image_of_row):
            assert torch.allclose(x[row, 4:], expected[image], atol=1e-6), (step, row)


def test_one_foreground_serves_every_image_and_wrong_counts_are_refused(script):
    model = shared.sd_model
    expected = encode(model, [demo_foreground(rgba_image(1))])[0]
    with UNetSpy() as spy:
        generate(script, fc_on(), batch_size=2, steps=2)
    assert all(torch.allclose(row, expected, atol=1e-6) for c in spy.calls for row in c.x[:, 4:])
    with UNetSpy() as spy, pytest.raises(ValueError, match="3 foregrounds for a batch of 2"):
        generate(script, fc_on(foreground=[b64(rgba_image(i)) for i in range(3)]), batch_size=2)
    assert spy.calls == []


# --- 5. hires fix -----------------------------------------------------------------------------------------------
def test_hires_pass_sees_the_concat_at_the_hires_size(script):
    model = shared.sd_model
    fg = demo_foreground(rgba_image(1))
    low, high = encode(model, [fg])[0], encode(model, [resize_and_center_crop(fg, 96, 96)])[0]
    seen = []
    with UNetSpy() as spy:
        generate(script, fc_on(), enable_hr=True, hr_scale=1.5, steps=2, p_hook=seen.append)
    sizes = [tuple(c.x.shape[-2:]) for c in spy.calls]
    assert (8, 8) in sizes and (12, 12) in sizes
    for c in spy.calls:
        want = low if c.x.shape[-1] == 8 else high
        assert all(torch.allclose(row, want, atol=1e-6) for row in c.x[:, 4:])
    assert seen[0].iclight_run.provider.encodes == 2


# --- 6. bad inputs ----------------------------------------------------------------------------------------------
BAD = {
    "missing file": (dict(model="nope.safetensors"), "not found in the folder"),
    "corrupt file": (dict(model="corrupt.safetensors"), "download it again"),
    "fbc without background": (dict(model="fbc.safetensors", bg_source="Use Background Image"),
                               "needs a background image: upload one"),
    "no foreground": (dict(foreground=None), "needs a foreground image: add one"),
    "mode vs file": (dict(mode="fc", model="fbc.safetensors"), "set the mode to auto"),
    "lighting in txt2img": (dict(lighting="Left Light"), "needs img2img"),
    "lighting with fbc": (dict(model="fbc.safetensors", bg_source="Ambient", lighting="Left Light", mode="auto"),
                          "lighting preference is for fc"),
    "even detail radius": (dict(detail_restore=True, detail_radius=4), "'detail_radius' must be odd"),
    "not base64": (dict(foreground="#not an image#"), "argument 'foreground'"),
    "no remover": (dict(foreground=b64(rgba_image(1).convert("RGB"))), "pip install rembg"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_stops_before_sampling_and_the_next_generation_is_unaffected(script, never, case):
    if case == "no remover" and remover_available():
        pytest.skip("rembg is installed here: the 'no remover' message cannot be shown")
    changes, message = BAD[case]
    model = shared.sd_model
    unet_hash = state_hash(model)
    mode = "img2img" if case == "lighting with fbc" else "txt2img"
    with UNetSpy() as spy, pytest.raises(ValueError) as info:
        generate(script, fc_on(**changes), mode=mode)
    assert message in str(info.value)
    assert spy.calls == [], "no sampling step ran"
    assert state_hash(model) == unet_hash
    assert torch.equal(generate(script, {"enabled": False}, seed=3).latents, never)
    assert generate(script, fc_on(), seed=3, steps=2).latents.shape == never.shape


def test_a_hires_checkpoint_switch_is_refused_before_sampling(script, never):
    """A different hires checkpoint reloads the model (dropping the merge) between the passes: the second pass
    would silently run without IC-Light, so the generation stops first and says what to change."""
    from modules import sd_models
    from support.generation import attach_text_encoder
    from support.tiny_models import make_ldm
    sd_models.register_checkpoint("other", attach_text_encoder(make_ldm("sd15", seed=1)))
    try:
        with UNetSpy() as spy, pytest.raises(ValueError, match="Use same checkpoint"):
            generate(script, fc_on(), enable_hr=True, hr_scale=1.5, hr_checkpoint_name="other.safetensors")
    finally:
        sd_models.forget_checkpoints()
    assert spy.calls == []
    result = generate(script, fc_on(), enable_hr=True, hr_scale=1.5, hr_checkpoint_name="Use same checkpoint")
    assert result.latents.shape[-1] == 12


def test_sdxl_base_is_refused_before_sampling(script):
    model = load_model("sdxl")
    unet_hash = state_hash(model)
    never = txt2img(seed=3, steps=3).latents
    with UNetSpy() as spy, pytest.raises(ValueError, match="Load an SD 1.5 checkpoint"):
        generate(script, fc_on())
    assert spy.calls == [] and state_hash(model) == unet_hash
    assert torch.equal(generate(script, {"enabled": False}, seed=3).latents, never)


# --- 7. API forms -----------------------------------------------------------------------------------------------
def test_dict_and_positional_calls_make_the_same_generation(script):
    values = fc_on(detail_restore=True, detail_radius=3)
    by_dict = generate(script, values, seed=7)
    positional = script.SPEC.positional(script.SPEC.parse([values]))
    by_position = generate(script, positional=positional, seed=7)
    assert torch.equal(by_dict.latents, by_position.latents)
    assert np.array_equal(np.asarray(by_dict.images[0]), np.asarray(by_position.images[0]))
    ui_like = list(positional)
    ui_like[3] = rgba_image(1)  # the UI sends a PIL image
    assert torch.equal(generate(script, positional=ui_like, seed=7).latents, by_dict.latents)
    data_url = generate(script, fc_on(foreground="data:image/png;base64," + b64(rgba_image(1))), seed=7)
    assert torch.equal(data_url.latents, by_dict.latents)


@pytest.mark.parametrize("values, message", [
    ({"enabled": True, "strength": 0.5}, "unknown argument 'strength'"),
    ({"enabled": True, "detail_radius": "big"}, "argument 'detail_radius' (Detail blur radius (odd)) must be a number"),
    ({"enabled": True, "foreground": 5}, "argument 'foreground' (Foreground) must be an image"),
    ({"enabled": True, "bg_source": "sunset"}, "argument 'bg_source'"),
    ({"enabled": "yes"}, "argument 'enabled'"),
])
def test_api_errors_name_the_field(script, values, message):
    with UNetSpy() as spy, pytest.raises(ValueError) as info:
        generate(script, values)
    assert message in str(info.value) and str(info.value).startswith("IC-Light")
    assert spy.calls == []


# --- img2img: lighting preference, detail restore ----------------------------------------------------------------
def test_img2img_lighting_preference_starts_from_the_demo_ramp(script):
    model = shared.sd_model
    seen = []
    lit = generate(script, fc_on(lighting="Left Light"), mode="img2img", batch_size=2, denoising_strength=0.9,
                   p_hook=seen.append)
    ramp = np.stack([np.tile(np.linspace(255, 0, 64), (64, 1))] * 3, -1).astype(np.uint8)
    expected = encode(model, [ramp]).expand(2, -1, -1, -1)
    torch.testing.assert_close(seen[0].init_latent, expected, atol=1e-6, rtol=0)
    plain = generate(script, fc_on(), mode="img2img", batch_size=2, denoising_strength=0.9)
    assert not torch.equal(lit.latents, plain.latents)
    assert "IC-Light lighting: Left Light" in lit.infotexts[0]


def test_img2img_concat_and_detail_restore(script):
    model = shared.sd_model
    expected = encode(model, [demo_foreground(rgba_image(1))])[0]
    with UNetSpy() as spy:
        plain = generate(script, fc_on(), mode="img2img")
    assert spy.calls and all(torch.allclose(r, expected, atol=1e-6) for c in spy.calls for r in c.x[:, 4:])
    detailed = generate(script, fc_on(detail_restore=True, detail_radius=3), mode="img2img")
    assert torch.equal(plain.latents, detailed.latents)
    want = restore_detail(np.array(plain.images[0]), demo_foreground(rgba_image(1)), 3)
    assert np.array_equal(np.asarray(detailed.images[0]), want)
    assert not np.array_equal(want, np.asarray(plain.images[0]))


# --- 8. infotext and paste; 9. UI ---------------------------------------------------------------------------------
def build_ui(script, is_img2img=False):
    instance = script.ICLightScript()
    instance.tabname = "img2img" if is_img2img else "txt2img"
    with gr.Blocks():
        controls = instance.ui(is_img2img)
    return instance, controls


def test_ui_builds_with_real_gradio(script, folder):
    instance, controls = build_ui(script)
    assert len(controls) == len(script.SPEC.fields)
    by_name = dict(zip([f.name for f in script.SPEC.fields], controls))
    assert by_name["model"].choices == ["corrupt.safetensors", "fbc.safetensors", "fc.safetensors"]
    assert by_name["model"].value == "fc.safetensors", "the default is an fc file (lib_iclight.default_model)"
    assert isinstance(by_name["foreground"], gr.Image) and isinstance(by_name["background"], gr.Image)
    assert isinstance(by_name["detail_radius"], gr.Slider)
    ui_values = [c.value for c in controls]
    parsed = script.SPEC.parse(ui_values)
    assert parsed.enabled is False


def test_infotext_written_and_restored_on_paste(script):
    values = fc_on(model="fbc.safetensors", bg_source="Left Light", detail_restore=True, detail_radius=7)
    result = generate(script, values)
    text = result.infotexts[0]
    for entry in ("IC-Light: True", "IC-Light model: fbc.safetensors", "IC-Light mode: fbc",
                  "IC-Light background: Left Light", "IC-Light lighting: None", "IC-Light detail restore: True",
                  "IC-Light detail radius: 7", "IC-Light remover: rembg"):
        assert entry in text
    assert "base64" not in text and len(text) < 600, "images are not written"

    instance, controls = build_ui(script)
    pasted = infotext_utils.paste(text, instance.infotext_fields)
    by_component = {id(component): value for (component, _), value in zip(instance.infotext_fields, pasted)}
    restored = [c.value if by_component.get(id(c)) is None else by_component[id(c)] for c in controls]
    got = script.SPEC.parse(restored)
    assert (got.enabled, got.model, got.mode, got.bg_source, got.detail_restore, got.detail_radius) == \
        (True, "fbc.safetensors", "fbc", "Left Light", True, 7)
    pasted_off = infotext_utils.paste("a cat\nSteps: 4, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64",
                                      instance.infotext_fields)
    assert pasted_off[0] is False


# --- X/Y/Z, reload, LoRA ----------------------------------------------------------------------------------------
def test_xyz_axes(script, folder):
    xyz = xyz_grid_double.install()
    added = script.register_axes()
    labels = [a.label for a in added]
    assert labels == ["IC-Light Model file", "IC-Light Background source (fbc)",
                      "IC-Light Lighting preference (fc, img2img)", "IC-Light Restore detail",
                      "IC-Light Detail blur radius (odd)"]
    assert script.register_axes() == []
    model_axis = xyz_grid_double.find_axis(xyz, "IC-Light Model file")
    assert "fc.safetensors" in model_axis.choices() and "later.safetensors" not in model_axis.choices()
    later = os.path.join(folder.path, "later.safetensors")
    with open(folder.fc, "rb") as src, open(later, "wb") as dst:
        dst.write(src.read())
    try:
        assert "later.safetensors" in model_axis.choices(), "the file list is read when the plot asks"
    finally:
        os.remove(later)
    p = processing.StableDiffusionProcessingTxt2Img(prompt="x")
    xyz_grid_double.run_axis(xyz, p, "IC-Light Background source (fbc)", ["Top Light"])
    xyz_grid_double.run_axis(xyz, p, "IC-Light Model file", ["fbc.safetensors"])
    got = script.SPEC.parse(defaults(script), p)
    assert got.enabled and got.bg_source == "Top Light" and got.model == "fbc.safetensors"

    # a cell of the plot: the axis values reach the generation
    def hook(q):
        xyz_grid_double.run_axis(xyz, q, "IC-Light Background source (fbc)", ["Top Light"])
        xyz_grid_double.run_axis(xyz, q, "IC-Light Model file", ["fbc.safetensors"])
    result = generate(script, fc_on(model="fc.safetensors"), p_hook=hook)
    assert "IC-Light background: Top Light" in result.infotexts[0] and "IC-Light mode: fbc" in result.infotexts[0]


def test_model_folder_flag_and_default(script, monkeypatch):
    from modules import paths
    assert script.model_folder() == shared.cmd_opts.iclight_dir
    monkeypatch.setattr(shared.cmd_opts, "iclight_dir", None)  # preload.py's default
    assert script.model_folder() == os.path.join(paths.models_path, "ic-light")
    assert script.model_choices() == [] or os.path.isdir(script.model_folder())


def test_reloading_the_script_keeps_one_set_of_callbacks(script):
    path = os.path.abspath(script.__file__)

    def ours():
        return [c for cbs in script_callbacks.callback_map.values() for c in cbs if os.path.abspath(c.script) == path]

    assert len(ours()) == 4
    again = load_script(SCRIPT_FILE)
    try:
        assert len(ours()) == 4
    finally:
        again.MERGER.restore()
        # the fixture's module stays the live one: re-register its callbacks as a reload would
        unload_callbacks(SCRIPT_FILE)
        script_callbacks.on_model_loaded(script.on_model_loaded)
        script_callbacks.on_script_unloaded(script.on_script_unloaded)
        script_callbacks.on_before_ui(script.register_axes)
        script_callbacks.on_app_started(script.glue_fields_route.add_route)


def test_script_unloaded_restores_every_merge(script):
    model = shared.sd_model
    unet_hash = state_hash(model)
    generate(script, fc_on())
    script_callbacks.script_unloaded_callback()
    assert state_hash(model) == unet_hash and not script.MERGER.is_merged()


@pytest.mark.parametrize("skip", ["NGMS", "Skip Early CFG"])
def test_skipped_uncond_rows_keep_each_images_foreground(script, skip):
    """NGMS and skip early CFG drop the uncond rows of x but, in WebUI v1.10.1, not those of image_cond: the
    concat must still line up with x row by row (cond rows come first)."""
    model = shared.sd_model
    tree = module_tree(model)
    fgs = [rgba_image(1), rgba_image(2)]
    expected = encode(model, [demo_foreground(f) for f in fgs])
    fields = dict(s_min_uncond=100.0) if skip == "NGMS" else {}
    shared.opts.skip_early_cond = 0.0 if skip == "NGMS" else 0.5
    with UNetSpy() as spy:
        result = generate(script, fc_on(foreground=[b64(f) for f in fgs]), batch_size=2, steps=4, **fields)
    assert skip in result.extra_generation_params
    rows = sorted({c.x.shape[0] for c in spy.calls})
    assert rows == [2, 4], "some steps skipped the uncond rows, others did not"
    for c in spy.calls:
        for row in range(c.x.shape[0]):
            assert torch.allclose(c.x[row, 4:], expected[row % 2], atol=1e-6)
    generate(script, {"enabled": False})
    assert module_tree(model) == tree, "the apply_model wrapper left with the merge"
