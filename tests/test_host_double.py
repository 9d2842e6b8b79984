"""The WebUI host double reproduces the v1.10.1 contract our scripts depend on (shared/WEBUI_FACTS.md)."""
import pytest
import torch

from modules import script_callbacks, scripts, sd_samplers, shared

from support.generation import img2img, load_model, reset_host, txt2img
from support.tiny_models import make_denoiser


@pytest.fixture(autouse=True)
def _host():
    reset_host()
    load_model("sd15")
    yield
    script_callbacks.clear_callbacks()
    reset_host()


class Recorder(scripts.Script):
    """An always-on script that records every hook it receives, with `is_hr_pass` where it matters."""

    def __init__(self):
        self.calls = []

    def title(self):
        return "Recorder"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def _rec(name):
        def hook(self, p, *args, **kwargs):
            self.calls.append(name + (" (hr)" if name == "process_before_every_sampling" and p.is_hr_pass else ""))
        return hook

    before_process = _rec("before_process")
    process = _rec("process")
    before_process_batch = _rec("before_process_batch")
    process_batch = _rec("process_batch")
    process_before_every_sampling = _rec("process_before_every_sampling")
    before_hr = _rec("before_hr")
    postprocess_batch = _rec("postprocess_batch")
    postprocess_image = _rec("postprocess_image")

    def postprocess(self, p, processed, *args):
        self.calls.append("postprocess")


BATCH_HOOKS = ["before_process_batch", "process_batch", "process_before_every_sampling"]


def test_hook_order_txt2img_img2img_and_hires():
    rec = Recorder()
    txt2img([rec], [], arg_counts=[0], batch_size=2)
    assert rec.calls == ["before_process", "process", *BATCH_HOOKS, "postprocess_batch",
                         "postprocess_image", "postprocess_image", "postprocess"]

    rec = Recorder()
    img2img([rec], [], arg_counts=[0])
    assert rec.calls == ["before_process", "process", *BATCH_HOOKS, "postprocess_batch", "postprocess_image", "postprocess"]

    rec = Recorder()
    txt2img([rec], [], arg_counts=[0], enable_hr=True, hr_scale=1.5, n_iter=2)
    per_batch = [*BATCH_HOOKS, "before_hr", "process_before_every_sampling (hr)", "postprocess_batch", "postprocess_image"]
    assert rec.calls == ["before_process", "process", *per_batch, *per_batch, "postprocess"]


def test_script_args_slices_and_swallowed_hook_errors():
    seen = {}

    class A(Recorder):
        def process(self, p, *args):
            seen["A"] = args

    class B(Recorder):
        def process(self, p, *args):
            seen["B"] = args
            raise RuntimeError("hook failure")

    result = txt2img([A(), B()], [1, 2, 3], arg_counts=[2, 1])
    assert seen == {"A": (1, 2), "B": (3,)}
    assert result.latents is not None, "an exception in a script hook is reported, not raised"
    assert any("hook failure" in text for _, _, text in scripts.reported_errors)


def test_exception_in_sampling_propagates_skips_postprocess_and_closes_p():
    rec = Recorder()
    unet = shared.sd_model.model.diffusion_model
    handle = unet.register_forward_hook(lambda *a: (_ for _ in ()).throw(RuntimeError("boom in unet")))
    holder = {}
    try:
        with pytest.raises(RuntimeError, match="boom in unet"):
            txt2img([rec], [], arg_counts=[0], p_hook=lambda p: holder.setdefault("p", p))
    finally:
        handle.remove()
    assert "postprocess" not in rec.calls and "process_before_every_sampling" in rec.calls
    assert holder["p"].closed


def test_interrupt_returns_last_latent_and_still_postprocesses():
    """Follows sd_samplers_common.Sampler.launch_sampling (InterruptedException -> last latent) and
    processing.process_images_inner of v1.10.1: the interrupted batch is decoded and post-processed, the next
    batch does not start, and `postprocess` runs (only other exceptions skip it)."""
    rec = Recorder()
    calls, outputs = [], []

    def interrupt_after_two(params):
        calls.append(params.sampling_step)
        if len(calls) == 2:
            shared.state.interrupted = True

    script_callbacks.on_cfg_denoiser(interrupt_after_two)
    script_callbacks.on_cfg_denoised(lambda params: outputs.append(params.x.clone()))
    holder = {}
    result = txt2img([rec], [], arg_counts=[0], steps=6, n_iter=2, p_hook=lambda p: holder.setdefault("p", p))
    assert len(calls) == 2, calls  # the 3rd denoiser call raises InterruptedException before any callback
    assert rec.calls == ["before_process", "process", *BATCH_HOOKS, "postprocess_batch", "postprocess_image",
                         "postprocess"]
    assert len(result.images) == 1 and result.latents.shape[0] == 1, "the second batch never starts"
    assert torch.equal(result.latents, outputs[-1][:1]), "the cond rows' x0 of the last completed denoiser call"
    assert holder["p"].closed


def test_skip_ends_only_the_current_batch():
    """v1.10.1 process_images_inner resets `state.skipped` at the start of each batch: Skip ends the running
    batch (through post-processing, like an interrupt) and the next batch runs in full."""
    rec = Recorder()
    calls = []

    def skip_first_batch(params):
        calls.append(params.sampling_step)
        if len(calls) == 2:
            shared.state.skipped = True

    script_callbacks.on_cfg_denoiser(skip_first_batch)
    result = txt2img([rec], [], arg_counts=[0], steps=3, n_iter=2)
    assert len(calls) == 2 + 3 and len(result.images) == 2
    assert rec.calls[-1] == "postprocess" and rec.calls.count("postprocess_image") == 2


def _denoisers_per_call():
    seen = []
    script_callbacks.on_cfg_denoiser(lambda params: seen.append((params.denoiser, params.denoiser.step)))
    return seen


def test_img2img_reuses_one_sampler_across_batches_txt2img_makes_one_per_pass():
    """img2img creates its sampler once in StableDiffusionProcessingImg2Img.init (v1.10.1), so every batch of a
    batch count > 1 runs on the same sampler and CFG denoiser object (Sampler.initialize resets its step);
    txt2img creates one in StableDiffusionProcessingTxt2Img.sample per batch and another in sample_hr_pass."""
    seen = _denoisers_per_call()
    img2img(n_iter=3, steps=2, denoising_strength=1.0)
    denoisers = [d for d, _ in seen]
    assert len(denoisers) == 6 and all(d is denoisers[0] for d in denoisers)
    assert [step for _, step in seen] == [0, 1] * 3, "initialize() restarts the step count per batch"

    seen.clear()
    txt2img(n_iter=2, steps=2)
    assert len(seen) == 4 and seen[0][0] is seen[1][0] and seen[2][0] is not seen[0][0]

    seen.clear()
    txt2img(steps=2, enable_hr=True, hr_scale=1.5, hr_second_pass_steps=2, denoising_strength=1.0)
    assert len(seen) == 4 and seen[0][0] is seen[1][0] and seen[2][0] is not seen[0][0]


def test_override_settings_apply_after_before_process_and_are_restored():
    """processing.process_images of v1.10.1: `before_process` runs under the user's settings (and may add
    overrides); then every `override_settings` entry is set with opts.set, the generation runs under them, and the
    stored values come back afterwards, also when sampling raises, unless override_settings_restore_afterwards
    is False. opts.set of an unregistered setting raises KeyError."""
    seen = {}

    class Script(Recorder):
        def before_process(self, p, *args):
            seen["before_process"] = shared.opts.img2img_extra_noise
            p.override_settings["sgm_noise_multiplier"] = True

        def process(self, p, *args):
            seen["process"] = (shared.opts.img2img_extra_noise, shared.opts.sgm_noise_multiplier)

    txt2img([Script()], [], arg_counts=[0], override_settings={"img2img_extra_noise": 0.25})
    assert seen == {"before_process": 0.0, "process": (0.25, True)}
    assert shared.opts.img2img_extra_noise == 0.0 and shared.opts.sgm_noise_multiplier is False

    unet = shared.sd_model.model.diffusion_model
    handle = unet.register_forward_pre_hook(lambda *a: (_ for _ in ()).throw(RuntimeError("boom in unet")))
    try:
        with pytest.raises(RuntimeError, match="boom in unet"):
            txt2img([Script()], [], arg_counts=[0], override_settings={"img2img_extra_noise": 0.5})
    finally:
        handle.remove()
    assert seen["process"] == (0.5, True) and shared.opts.img2img_extra_noise == 0.0
    assert shared.opts.sgm_noise_multiplier is False

    txt2img(override_settings={"img2img_extra_noise": 0.75},
            p_hook=lambda p: setattr(p, "override_settings_restore_afterwards", False))
    assert shared.opts.img2img_extra_noise == 0.75
    with pytest.raises(KeyError):
        txt2img(override_settings={"no_such_setting": 1})


def test_sampling_step_lags_model_calls_and_denoiser_step_counts_calls():
    seen = []
    script_callbacks.on_cfg_denoiser(lambda params: seen.append((params.sampling_step, params.denoiser.step)))
    txt2img(steps=4)
    assert seen == [(0, 0), (0, 1), (1, 2), (2, 3)]


def _capture_model_calls():
    calls = []
    model = shared.sd_model
    original = model.apply_model

    def apply_model(x, t, cond):
        out = original(x, t, cond)
        calls.append({"x": x.clone(), "t": t.clone(), "cond": cond, "out": out.clone()})
        return out

    model.apply_model = apply_model
    return calls


def test_cfg_denoiser_batching_batch2_with_and_prompt():
    """Rows: cond rows of image 0 (2 AND parts), image 1 (2 parts), then the two uncond rows; the combine step
    is uncond + Σ weight·scale·(cond_part − uncond) on the denoised outputs."""
    denoised_seen, inputs = [], []
    script_callbacks.on_cfg_denoiser(lambda params: inputs.append((params.x.clone(), params.text_cond.clone(), params.text_uncond.clone())))
    script_callbacks.on_cfg_after_cfg(lambda params: denoised_seen.append(params.x.clone()))
    calls = _capture_model_calls()
    txt2img(prompt="a cat AND a dog:0.5", batch_size=2, steps=2, cfg_scale=5.0)

    x_in, text_cond, text_uncond = inputs[0]
    assert x_in.shape[0] == 6 and text_cond.shape[0] == 4 and text_uncond.shape[0] == 2
    assert torch.equal(x_in[0], x_in[1]) and torch.equal(x_in[2], x_in[3])
    assert torch.equal(x_in[4], x_in[0]) and torch.equal(x_in[5], x_in[2])
    assert torch.equal(text_cond[0], text_cond[2]) and not torch.equal(text_cond[0], text_cond[1])

    first = calls[0]
    assert first["x"].shape[0] == 6, "batch_cond_uncond: one model call with all rows"
    denoiser = make_denoiser(shared.sd_model)
    sigma = denoiser.sigmas[-1]
    # rebuild the k-diffusion denoised from the eps the model returned: D = x − σ·eps, on c_in-scaled input
    c_in = 1 / (sigma ** 2 + 1) ** 0.5
    d = x_in - sigma * first["out"]
    assert torch.allclose(first["x"], x_in * c_in, atol=1e-6)
    expected = torch.stack([d[4] + 5.0 * (1.0 * (d[0] - d[4]) + 0.5 * (d[1] - d[4])),
                            d[5] + 5.0 * (1.0 * (d[2] - d[5]) + 0.5 * (d[3] - d[5]))])
    assert torch.allclose(denoised_seen[0], expected, atol=1e-4)


def test_batch_cond_uncond_off_calls_model_per_image_batch():
    shared.opts.batch_cond_uncond = False
    calls = _capture_model_calls()
    txt2img(prompt="a cat AND a dog", batch_size=2, steps=1)
    assert [c["x"].shape[0] for c in calls] == [2, 2, 2]


LONG = " ".join(f"word{i}" for i in range(80))  # 80 words: two 75-token chunks, 154 tokens


def test_text_encoder_gives_77_tokens_per_75_word_chunk():
    """As sd_hijack_clip.FrozenCLIPEmbedderWithCustomWordsBase (chunk_length 75, 77 tokens per chunk, hstack) of
    v1.10.1; within one call texts are padded to the longest with the empty chunk."""
    model = shared.sd_model
    assert model.get_learned_conditioning([""]).shape == (1, 77, model.context_dim)
    assert model.get_learned_conditioning([" ".join(["w"] * 75)]).shape[1] == 77
    assert model.get_learned_conditioning([" ".join(["w"] * 76)]).shape[1] == 154
    both = model.get_learned_conditioning([LONG, "a cat"])
    assert both.shape[:2] == (2, 154)
    assert torch.equal(both[1, :77], model.get_learned_conditioning(["a cat"])[0])
    assert torch.equal(both[1, 77:], model.cond_stage_model_empty_prompt[0])
    load_model("sdxl")
    cond = shared.sd_model.get_learned_conditioning([LONG])
    assert cond["crossattn"].shape[1] == 154 and cond["vector"].shape[0] == 1


def _long_prompt_run(**fields):
    calls = _capture_model_calls()
    outputs, denoised = [], []
    script_callbacks.on_cfg_denoised(lambda params: outputs.append(params.x.clone()))
    script_callbacks.on_cfg_after_cfg(lambda params: denoised.append(params.x.clone()))
    txt2img(**{"prompt": LONG, "steps": 1, "cfg_scale": 5.0, **fields})
    return calls, outputs, denoised


def test_cond_and_uncond_of_different_lengths_run_as_separate_model_calls():
    """CFGDenoiser.forward of v1.10.1 with pad_cond_uncond off (the default): when the cond and the uncond have
    different token lengths, the cond rows (in slices of 2x the image batch, `batch_cond_uncond`) and the uncond
    rows are separate model calls; AND parts of different lengths are padded by stack_conds (last vector)."""
    model = shared.sd_model
    long_c, short_c = model.get_learned_conditioning([LONG])[0], model.get_learned_conditioning(["a cat"])[0]
    uc = model.get_learned_conditioning(["blurry"])[0]
    calls, outputs, denoised = _long_prompt_run(batch_size=2)
    assert [(c["x"].shape[0], c["cond"]["c_crossattn"][0].shape[1]) for c in calls] == [(2, 154), (2, 77)]
    assert all(torch.equal(row, long_c) for row in calls[0]["cond"]["c_crossattn"][0])
    assert all(torch.equal(row, uc) for row in calls[1]["cond"]["c_crossattn"][0])
    x_out = outputs[0]
    assert torch.allclose(denoised[0], x_out[2:] + 5.0 * (x_out[:2] - x_out[2:]), atol=1e-6)

    calls, _, _ = _long_prompt_run(prompt=f"{LONG} AND a cat", batch_size=2)
    assert [(c["x"].shape[0], c["cond"]["c_crossattn"][0].shape[1]) for c in calls] == [(4, 154), (2, 77)]
    padded = calls[0]["cond"]["c_crossattn"][0][1]
    assert torch.equal(padded[:77], short_c) and torch.equal(padded[77:], short_c[-1:].expand(77, -1))

    shared.opts.batch_cond_uncond = False
    calls, _, _ = _long_prompt_run(prompt=f"{LONG} AND a cat", batch_size=2)
    assert [c["x"].shape[0] for c in calls] == [2, 2, 2]


def test_pad_cond_uncond_options_make_one_model_call():
    """pad_cond_uncond pads the shorter side with empty-prompt chunks (cond_stage_model_empty_prompt);
    pad_cond_uncond_v0 pads the uncond with its last vector (v1.10.1 CFGDenoiser.pad_cond_uncond(_v0))."""
    model = shared.sd_model
    uc = model.get_learned_conditioning(["blurry"])[0]
    shared.opts.pad_cond_uncond = True
    calls, _, _ = _long_prompt_run()
    assert [c["x"].shape[0] for c in calls] == [2]
    context = calls[0]["cond"]["c_crossattn"][0]
    assert context.shape[1] == 154 and torch.equal(context[1, :77], uc)
    assert torch.equal(context[1, 77:], model.cond_stage_model_empty_prompt[0])

    shared.opts.pad_cond_uncond_v0 = True
    calls, _, _ = _long_prompt_run()
    context = calls[0]["cond"]["c_crossattn"][0]
    assert [c["x"].shape[0] for c in calls] == [2] and torch.equal(context[1, 77:], uc[-1:].expand(77, -1))

    shared.opts.pad_cond_uncond = shared.opts.pad_cond_uncond_v0 = False
    load_model("sdxl")
    calls = _capture_model_calls()
    txt2img(prompt=LONG, steps=1, width=32, height=32)
    assert [(c["x"].shape[0], c["cond"]["crossattn"].shape[1]) for c in calls] == [(1, 154), (1, 77)]


def test_core_cfg_denoiser_double_splits_unequal_lengths_too():
    """tests/support/cfg_denoiser_double (the CFG++ core tests' denoiser) follows the same v1.10.1 branch."""
    from support.cfg_denoiser_double import CFGDenoiserDouble
    model = shared.sd_model
    den = make_denoiser(model)
    c, uc = model.get_learned_conditioning([LONG]), model.get_learned_conditioning(["blurry"])
    x, sigma = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3)), den.sigmas[500:501]
    zeros = x.new_zeros([1, 0, 8, 8])
    with torch.no_grad():
        out = CFGDenoiserDouble(den)(x, sigma, uncond=uc, cond=c, cond_scale=4.0)
        d_c = den(x, sigma, cond={"c_crossattn": [c], "c_concat": [zeros]})
        d_u = den(x, sigma, cond={"c_crossattn": [uc], "c_concat": [zeros]})
    assert torch.allclose(out, d_u + 4.0 * (d_c - d_u), atol=1e-6)


def test_ngms_skips_uncond_rows_on_odd_steps():
    """Negative Guidance minimum sigma: on odd denoiser steps below the sigma the uncond rows are not run."""
    calls = _capture_model_calls()
    result = txt2img(steps=4, s_min_uncond=100.0)
    assert [c["x"].shape[0] for c in calls] == [2, 1, 2, 1]
    assert result.extra_generation_params["NGMS"] == 100.0


def test_edit_model_three_way_batch():
    shared.sd_model.cond_stage_key = "edit"
    calls = _capture_model_calls()
    img2img(image_cfg_scale=1.5, steps=2, denoising_strength=1.0)
    first = calls[0]
    assert first["x"].shape[0] == 3
    concat = first["cond"]["c_concat"][0]
    assert concat.shape[0] == 3 and torch.count_nonzero(concat[2]) == 0


def test_img2img_mask_keeps_unmasked_latents():
    from PIL import Image
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))  # inpaint the left half
    holder = {}
    result = img2img(image_mask=mask, steps=3, p_hook=lambda p: holder.setdefault("p", p))
    p = holder["p"]
    kept = p.mask.bool()
    assert torch.equal(result.latents[0][kept], p.init_latent[0][kept])
    assert not torch.equal(result.latents[0][~kept], p.init_latent[0][~kept])


def _reference_euler(seed, steps, cfg, model):
    """Plain k-diffusion Euler with a hand-written CFG around the same tiny model and the same prompts."""
    import k_diffusion.sampling as kds
    denoiser = make_denoiser(model)
    sigmas = denoiser.get_sigmas(steps)
    x = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(seed)) * sigmas[0]
    c = model.get_learned_conditioning(["a cat"])
    uc = model.get_learned_conditioning(["blurry"])
    zeros = torch.zeros(2, 5, 1, 1)

    def cfg_model(x, sigma):
        out = denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), cond={"c_crossattn": [torch.cat([c, uc])], "c_concat": [zeros]})
        return out[1:] + cfg * (out[:1] - out[1:])

    with torch.no_grad():
        return kds.sample_euler(cfg_model, x, sigmas, disable=True)


def test_seeded_euler_generation_is_deterministic_and_matches_kdiffusion():
    a = txt2img(seed=11, steps=5, cfg_scale=6.0).latents
    b = txt2img(seed=11, steps=5, cfg_scale=6.0).latents
    c = txt2img(seed=12, steps=5, cfg_scale=6.0).latents
    assert torch.equal(a, b) and not torch.equal(a, c)
    reference = _reference_euler(11, 5, 6.0, shared.sd_model)
    assert torch.allclose(a, reference, atol=1e-4, rtol=0), (a - reference).abs().max()


def test_sampler_registry_lookups():
    assert sd_samplers.get_sampler_and_scheduler("DPM++ 2M Karras", None) == ("DPM++ 2M", "Automatic")
    assert sd_samplers.get_sampler_and_scheduler("Euler Uniform", None) == ("Euler", "Uniform")
    assert sd_samplers.samplers_map["k_euler_a"] == "Euler a"
    assert "DDIM CFG++" in sd_samplers.visible_sampler_names()


def test_remove_current_script_callbacks_only_drops_the_callers():
    def mine(params):
        pass
    script_callbacks.on_cfg_denoiser(mine)
    assert any(c.callback is mine for c in script_callbacks.callback_map["callbacks_cfg_denoiser"])
    script_callbacks.remove_current_script_callbacks()
    assert not script_callbacks.callback_map["callbacks_cfg_denoiser"]


# --- X/Y/Z plot (scripts/xyz_grid.py of v1.10.1: Script.run, draw_xyz_grid, AxisOption.apply) --------------------
def _grid_p(rec, **fields):
    from modules import processing
    from support.generation import DEFAULTS
    p = processing.StableDiffusionProcessingTxt2Img(**{**DEFAULTS, "steps": 2, **fields})
    p.scripts = scripts.ScriptRunner([rec], arg_counts=[0])
    p.script_args = [0]
    return p


def test_xyz_grid_runs_every_cell_on_a_copy_and_closes_only_p():
    """Each cell: pc = copy(p), the axes' apply on pc, process_images(pc); the copies share p's dicts and are never
    closed; the loop runs z, y, then x innermost; the outer p's fields are untouched."""
    import xyz_grid_double
    xyz = xyz_grid_double.install()
    rec = Recorder()
    seen = []
    rec.process = lambda p, *args: seen.append(p)
    p = _grid_p(rec)
    cells = xyz_grid_double.run_grid(xyz, p, x=("Steps", ["1", "2"]), y=("CFG Scale", ["5", "7.5"]))
    assert [(c.x, c.y) for c in cells] == [(1, 5.0), (2, 5.0), (1, 7.5), (2, 7.5)]
    assert [(c.p.steps, c.p.cfg_scale) for c in cells] == [(1, 5.0), (2, 5.0), (1, 7.5), (2, 7.5)]
    assert seen == [c.p for c in cells] and len({id(c.p) for c in cells} | {id(p)}) == 5
    assert (p.steps, p.cfg_scale) == (2, 7.0)
    assert all(c.p.extra_generation_params is p.extra_generation_params for c in cells), "a shallow copy"
    assert p.closed and not any(getattr(c.p, "closed", False) for c in cells)
    assert all(c.processed.images and c.error is None for c in cells)


def test_xyz_grid_does_not_check_choices_and_blanks_failing_cells():
    """process_axis converts and confirms (known sampler names) but never checks `choices`: a hidden sampler runs.
    An exception in process_images gives a blank cell and the plot goes on; one in apply stops the plot."""
    import xyz_grid_double
    xyz = xyz_grid_double.install()
    shared.opts.hide_samplers = ["Euler"]
    assert "Euler" not in xyz_grid_double.find_axis(xyz, "Sampler").choices()
    rec = Recorder()
    unet = shared.sd_model.model.diffusion_model

    def fail_at_four_steps(module, args):
        if rec.steps == 4:
            raise RuntimeError("cell failure")
    rec.process = lambda p, *args: setattr(rec, "steps", p.steps)
    handle = unet.register_forward_pre_hook(fail_at_four_steps)
    try:
        cells = xyz_grid_double.run_grid(xyz, _grid_p(rec), x=("Sampler", ["Euler"]), y=("Steps", ["4", "2"]))
    finally:
        handle.remove()
    assert [c.p.sampler_name for c in cells] == ["Euler", "Euler"]
    assert cells[0].processed is None and "cell failure" in str(cells[0].error)
    assert cells[1].processed.images
    with pytest.raises(RuntimeError, match="Unknown sampler"):
        xyz_grid_double.run_grid(xyz, _grid_p(rec), x=("Sampler", ["Nope"]))

    def bad_apply(p, x, xs):
        raise ValueError("bad value")
    xyz.axis_options.append(xyz_grid_double.AxisOption("Bad", str, bad_apply))
    with pytest.raises(ValueError, match="bad value"):
        xyz_grid_double.run_grid(xyz, _grid_p(rec), x=("Bad", ["a"]))


def test_xyz_grid_order_follows_axis_cost_and_interrupt_blanks_the_rest():
    import xyz_grid_double
    xyz = xyz_grid_double.install()
    xyz.axis_options.append(xyz_grid_double.AxisOption("Costly", str, xyz_grid_double.do_nothing, cost=1.0))
    rec = Recorder()
    cells = xyz_grid_double.run_grid(xyz, _grid_p(rec), x=("Costly", ["a", "b"]), y=("Steps", ["1", "2"]))
    assert [(c.x, c.y) for c in cells] == [("a", 1), ("a", 2), ("b", 1), ("b", 2)], "the costly axis outermost"

    def interrupt(params):
        shared.state.interrupted = True
    script_callbacks.on_cfg_denoiser(interrupt)
    cells = xyz_grid_double.run_grid(xyz, _grid_p(rec), x=("Steps", ["2", "3"]))
    assert cells[0].processed.images and cells[1].p is None and cells[1].processed is None


def test_xyz_override_axes_reach_the_sampler_per_cell_and_are_restored():
    """apply_override stores into p.override_settings (one dict shared by all copies); process_images sets it after
    before_process for each cell and restores the settings afterwards (v1.10.1 xyz_grid.apply_override,
    processing.process_images): each cell samples with its own SGM noise multiplier / extra noise."""
    import xyz_grid_double
    from modules import processing
    from support.generation import DEFAULTS, gradient_image
    xyz = xyz_grid_double.install()
    cells = xyz_grid_double.run_grid(xyz, _grid_p(Recorder(), steps=3), x=("SGM noise multiplier", ["False", "True"]))
    assert ["SGM noise multiplier: True" in c.processed.infotexts[0] for c in cells] == [False, True]
    assert not torch.equal(cells[0].processed.latents, cells[1].processed.latents)
    assert shared.opts.sgm_noise_multiplier is False

    p = processing.StableDiffusionProcessingImg2Img(**{**DEFAULTS, "steps": 3, "denoising_strength": 0.5,
                                                       "init_images": [gradient_image(64, 64)]})
    p.scripts, p.script_args = scripts.ScriptRunner([Recorder()], is_img2img=True, arg_counts=[0]), [0]
    cells = xyz_grid_double.run_grid(xyz, p, x=("Extra noise", ["0", "0.5"]), is_img2img=True)
    assert ["Extra noise: 0.5" in c.processed.infotexts[0] for c in cells] == [False, True]
    assert shared.opts.img2img_extra_noise == 0.0 and p.override_settings == {"img2img_extra_noise": 0.5}
