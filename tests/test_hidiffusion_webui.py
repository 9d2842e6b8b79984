"""HiDiffusion through the WebUI host double: whole txt2img / img2img / hires generations on tiny models.

Covers the issue's must-show items at the WebUI level: the RAU-Net schedule observed in real generations
(Euler, Heun, DPM++ 2M, DDIM at 20/30/50 steps, txt2img and img2img) against the official rule, not shifted by
batching/AND/NGMS; seeded reproducibility; exact restore (disabled after enabled, after an exception, after an
interrupt, on close, on unload); a size sweep; API positional == dict and errors naming the field; infotext and
paste; real gradio UI; X/Y/Z; HyperTile/ToMe refusal; hires-pass behaviour; family/time options."""
import gradio as gr
import pytest
import torch

from modules import infotext_utils, processing, script_callbacks, scripts, shared

import lib_hidiffusion as H
import xyz_grid_double
from support.generation import img2img, load_model, reset_host, txt2img
from support.hidiffusion_webui_probe import PhaseProbe, StepTruth, load_fast_sd15
from support.scripts_loader import load_script, loaded_hidiffusion
from support.ssd1b import to_ssd1b_model

SCRIPT_FILE = "hidiffusion.py"


# --- fixtures and helpers ------------------------------------------------------------------------------------
module = pytest.fixture(scope="module")(loaded_hidiffusion)


@pytest.fixture(autouse=True)
def _host(module):
    reset_host()
    yield
    assert not scripts.reported_errors, scripts.reported_errors
    assert not script_callbacks.reported_errors, script_callbacks.reported_errors
    assert not _our_denoiser_callbacks(module), "cfg_denoiser callback left registered"
    assert module.CONTROLLER.p is None and not module.CONTROLLER.state.armed
    if shared.sd_model is not None:
        assert not H.is_patched(shared.sd_model.model.diffusion_model), "UNet left patched"
    reset_host()


def _our_denoiser_callbacks(module):
    return [c for c in script_callbacks.callback_map["callbacks_cfg_denoiser"] if c.callback is module.on_cfg_denoiser]


def _args(module, **changes):
    spec = module.SPEC
    return spec.positional(spec.replace(spec.defaults(), enabled=True, **changes))


def _run(module, kind="txt2img", script_args=None, **fields):
    script = module.HiDiffusionScript()
    args = _args(module) if script_args is None else script_args
    run = txt2img if kind == "txt2img" else img2img
    return run([script], args, arg_counts=[len(module.SPEC.fields)], **fields)


def _unet():
    return shared.sd_model.model.diffusion_model


def _snapshot(unet):
    """Module tree, classes, instance forwards (presence and identity), conv geometry and weights."""
    tree = [(name, type(m), m.__dict__.get("forward"), getattr(m, "stride", None), getattr(m, "padding", None),
             getattr(m, "dilation", None), tuple(m._forward_hooks), tuple(m._forward_pre_hooks))
            for name, m in unet.named_modules()]
    return tree, {k: v.clone() for k, v in unet.state_dict().items()}


def _assert_same(a, b):
    assert a[0] == b[0]
    assert a[1].keys() == b[1].keys() and all(torch.equal(a[1][k], b[1][k]) for k in a[1])


# --- schedule ----------------------------------------------------------------------------------------------------
SAMPLERS = ["Euler", "Heun", "DPM++ 2M", "DDIM"]


def _steps_run(sampler, kind, steps):
    """Steps the WebUI runs: img2img k-diffusion int(0.6 N) + 1; its DDIM walks N timesteps (img2img: the first
    int(0.6 N)) with one model call fewer than timesteps."""
    if sampler == "DDIM":
        return (len(range(0, 1000, 1000 // steps)) if kind == "txt2img" else int(0.6 * steps)) - 1
    return steps if kind == "txt2img" else int(0.6 * steps) + 1


@pytest.mark.parametrize("kind", ["txt2img", "img2img"])
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_schedule_matches_official_rule(module, monkeypatch, sampler, kind):
    """Per UNet call of real generations, whether RAD (stride-4 conv) and the avg-pool ran equals
    rau_active(step, steps run) of the official rule (T1 0.6 for RAD, T2 0.3 for the pool), the step being the
    sampler's own loop index (k-diffusion) or its callback count (DDIM), at 20/30/50 steps, img2img at 0.6.
    The step the adapter located from sigma must also equal that index at every call (Heun's correction too)."""
    load_fast_sd15()
    unet = _unet()
    config = H.make_config(unet, (8, 8), "sd15", t1=0.6, t2=0.3)
    truth = StepTruth(monkeypatch, unet)
    probe = PhaseProbe(unet, step_of=lambda: module.CONTROLLER.state.step)
    args = _args(module, timing="Fraction of steps", t1=0.6, t2=0.3, msw_msa=False)
    try:
        for steps in (20, 30, 50):
            truth.reset()
            probe.calls.clear()
            _run(module, kind, args, sampler_name=sampler, steps=steps, denoising_strength=0.6)
            if sampler == "DDIM":
                step_of = [callbacks for _, callbacks in truth.calls]
                total = len(truth.calls)
            else:
                (total,) = truth.loop_lengths
                step_of = [index for index, _ in truth.calls]
            assert total == _steps_run(sampler, kind, steps), (sampler, kind, steps)
            expected = [tuple(H.rau_active(i, total, config)) for i in step_of]
            assert probe.phases() == expected, (sampler, kind, steps)
            assert [c["step"] for c in probe.calls] == step_of, (sampler, kind, steps)  # located exactly
            assert any(r for r, _ in expected) and any(p for _, p in expected) and not any(expected[-1])
            if sampler == "Heun":
                assert len(truth.calls) > total  # two calls per step: gating by step, not by call
    finally:
        probe.close()
        truth.close()


def test_sdxl_aggressive_schedule_in_a_generation(module, monkeypatch):
    """SDXL below 4096 px (official: aggressive): RAD/RAU for int(8/50 N) steps, then the pool pair until
    int(0.4 N), observed on the SDXL patch points (pool after input_blocks[4], RAD at input_blocks[6])."""
    load_model("sdxl")
    unet = _unet()
    config = H.make_config(unet, (8, 8), "sdxl")
    assert config.aggressive
    truth, probe = StepTruth(monkeypatch, unet), PhaseProbe(unet, rad_input=6, pool_input=4)
    try:
        _run(module, sampler_name="Euler", steps=20)
        expected = [tuple(H.rau_active(i, 20, config)) for i, _ in truth.calls]
        assert probe.phases() == expected
        assert expected[:3] == [(True, False)] * 3 and expected[3:8] == [(False, True)] * 5
    finally:
        probe.close()
        truth.close()


def test_batching_and_prompts_do_not_shift_the_schedule(module, monkeypatch):
    """batch_cond_uncond off (one UNet call per cond/uncond slice), an AND prompt (extra cond rows), NGMS
    (uncond skipped on some steps) and batch 2: every UNet call of a step gets that step's phase."""
    load_fast_sd15()
    unet = _unet()
    config = H.make_config(unet, (8, 8), "sd15", t1=0.6, t2=0.3)
    truth, probe = StepTruth(monkeypatch, unet), PhaseProbe(unet)
    shared.opts.batch_cond_uncond = False
    try:
        result = _run(module, script_args=_args(module, timing="Fraction of steps", t1=0.6, t2=0.3),
                      sampler_name="Euler", steps=20, prompt="a cat AND a dog", s_min_uncond=6.0, batch_size=2)
        assert result.extra_generation_params.get("NGMS") == 6.0
        expected = [tuple(H.rau_active(i, 20, config)) for i, _ in truth.calls]
        assert probe.phases() == expected
        calls_per_step = [sum(1 for i, _ in truth.calls if i == s) for s in range(20)]
        assert len(set(calls_per_step)) > 1  # NGMS changed the number of calls on some steps
    finally:
        probe.close()
        truth.close()


def test_steps_timing_counts_the_steps_run(module, monkeypatch):
    """'Steps' timing: T1 = 5 steps, T2 = 2 steps of the steps actually run (img2img: the tail)."""
    load_fast_sd15()
    unet = _unet()
    truth, probe = StepTruth(monkeypatch, unet), PhaseProbe(unet)
    args = _args(module, timing="Steps", t1=5, t2=2)
    try:
        for kind in ("txt2img", "img2img"):
            truth.reset()
            probe.calls.clear()
            _run(module, kind, args, sampler_name="Euler", steps=20, denoising_strength=0.6)
            assert probe.phases() == [(i < 5, i < 2) for i, _ in truth.calls]
    finally:
        probe.close()
        truth.close()


def test_ratio_for_steps():
    from lib_hidiffusion.schedule import switch_step
    for total in range(1, 120):
        for k in range(total + 3):
            assert switch_step(total, H.ratio_for_steps(k, total)) == min(k, total)
    with pytest.raises(ValueError):
        H.ratio_for_steps(-1, 10)


# --- reproducibility ---------------------------------------------------------------------------------------
def test_same_seed_reproduces_and_seeds_change_the_shift(module, monkeypatch):
    """MSW-MSA with the seeded shift: same seed twice = bit-identical latents and the same shifts; another seed
    draws other shifts (recorded at the window partition the wrappers call)."""
    load_model("sd15")
    msw = __import__("hdsuite_private.lib_hidiffusion.msw_msa", fromlist=["window_partition"])
    shifts = []
    real = msw.window_partition
    monkeypatch.setattr(msw, "window_partition", lambda x, hw, k: (shifts.append(k), real(x, hw, k))[1])

    def run(seed):
        shifts.clear()
        latents = _run(module, sampler_name="Euler", steps=6, seed=seed).latents
        return latents, list(shifts)

    a, b, c = run(5), run(5), run(6)
    assert len(a[1]) == 6 * 5  # 5 windowed blocks per call in the SD1.5 layout
    assert torch.equal(a[0], b[0]) and a[1] == b[1]
    assert a[1] != c[1] and not torch.equal(a[0], c[0])
    assert len(set(a[1])) > 1


LONG_PROMPT = " ".join(f"word{i}" for i in range(80))  # 154 tokens against the negative prompt's 77


class _WindowShiftProbe:
    """Hooks only: per UNet call, for each windowed attn1 call (its to_q sees 4x the rows), the token index in
    the attn1 input of the first token of the first window: 0 without a cyclic shift, moved by the shift."""

    def __init__(self, unet):
        self.calls, self._x = [], None
        self.handles = [unet.register_forward_pre_hook(lambda m, a: self.calls.append((a[0].shape[0], [])))]
        for name, mod in unet.named_modules():
            if name.endswith("attn1"):
                self.handles.append(mod.register_forward_pre_hook(self._attn1))
                self.handles.append(mod.to_q.register_forward_pre_hook(self._to_q))

    def _attn1(self, module, args):
        self._x = args[0]

    def _to_q(self, module, args):
        windows = args[0]
        if windows.shape[0] != 4 * self._x.shape[0]:
            return
        where = (self._x == windows[0, 0]).all(dim=-1).nonzero()
        self.calls[-1][1].append(int(where[0, 1]))

    def close(self):
        for handle in self.handles:
            handle.remove()


@pytest.mark.parametrize("shift", ["Seeded", "Official random"])
def test_cond_and_uncond_calls_of_one_step_share_the_window_shift(module, shift):
    """A prompt and a negative prompt of different token lengths make the WebUI run the cond rows and the uncond
    rows as two UNet calls per denoiser step (v1.10.1 CFGDenoiser.forward, pad_cond_uncond off). The official
    code batches cond and uncond under one shift, so both calls of a step must use the same window shift."""
    load_fast_sd15()
    probe = _WindowShiftProbe(_unet())
    try:
        _run(module, script_args=_args(module, shift=shift), prompt=LONG_PROMPT, sampler_name="Euler", steps=6, batch_size=2)
    finally:
        probe.close()
    assert [batch for batch, _ in probe.calls] == [2] * 12, "cond and uncond rows in separate UNet calls"
    cond_calls, uncond_calls = probe.calls[0::2], probe.calls[1::2]
    assert all(len(shifts) == 5 for _, shifts in probe.calls), "MSW-MSA windowed the 5 top blocks in every call"
    assert [s for _, s in cond_calls] == [s for _, s in uncond_calls]
    assert len({i for _, s in cond_calls for i in s}) > 1, "the shift varies over blocks and steps"


# --- restore -----------------------------------------------------------------------------------------------
def test_disabled_after_enabled_is_bit_identical_and_nothing_stays_active(module):
    load_model("sd15")
    unet = _unet()
    before = _snapshot(unet)
    never = txt2img(sampler_name="Euler", steps=4, seed=3).latents
    seen = []

    def spy(params):
        seen.append((H.is_patched(unet), len(_our_denoiser_callbacks(module))))

    enabled = _run(module, sampler_name="Euler", steps=4, seed=3).latents
    assert not torch.equal(enabled, never)
    script_callbacks.on_cfg_denoiser(spy)
    try:
        off = _run(module, script_args=module.SPEC.positional(module.SPEC.defaults()), sampler_name="Euler",
                   steps=4, seed=3).latents
    finally:
        script_callbacks.remove_callbacks_for_function(spy)
    assert torch.equal(off, never)
    assert seen and all(s == (False, 0) for s in seen)  # off: no patch, no callback during the generation
    _assert_same(_snapshot(unet), before)


class _Boom(RuntimeError):
    pass


def _raise_at(unet, call):
    """A forward pre-hook on output_blocks[0] (after the patched RAD) that raises on UNet call `call`."""
    count = {"n": 0}

    def hook(module, args):
        count["n"] += 1
        if count["n"] == call:
            raise _Boom("UNet failed mid-generation")
    return unet.output_blocks[0].register_forward_pre_hook(hook)


def test_exception_in_sampling_then_baseline(module):
    """The UNet raises at call 2 (inside T1): the generation fails, p.close() releases everything (module tree
    and forwards as before), and the next generation without HiDiffusion is the baseline bit for bit."""
    load_model("sd15")
    unet = _unet()
    before = _snapshot(unet)
    baseline = txt2img(sampler_name="Euler", steps=4).latents
    handle = _raise_at(unet, 2)
    try:
        with pytest.raises(_Boom):
            _run(module, sampler_name="Euler", steps=4)
    finally:
        handle.remove()
    _assert_same(_snapshot(unet), before)
    assert not _our_denoiser_callbacks(module)
    off = module.SPEC.positional(module.SPEC.defaults())
    assert torch.equal(_run(module, script_args=off, sampler_name="Euler", steps=4).latents, baseline)


def test_crash_without_close_is_healed_by_the_next_generation(module):
    """A host that neither calls postprocess nor close (worst case): the wrappers stay, but the next
    generation's first hook removes them; its output is the baseline and the tree is restored."""
    load_model("sd15")
    unet = _unet()
    before = _snapshot(unet)
    baseline = txt2img(sampler_name="Euler", steps=4).latents
    p = processing.StableDiffusionProcessingTxt2Img(prompt="a cat", negative_prompt="blurry", seed=1, steps=4,
                                                    width=64, height=64, sampler_name="Euler", scheduler="Automatic")
    p.scripts = scripts.ScriptRunner([module.HiDiffusionScript()], arg_counts=[len(module.SPEC.fields)])
    p.script_args = [0, *_args(module)]
    handle = _raise_at(unet, 2)
    try:
        with pytest.raises(_Boom):
            processing.process_images(p)  # no closing(p)
    finally:
        handle.remove()
    assert H.is_patched(unet) and module.CONTROLLER.state.armed
    off = module.SPEC.positional(module.SPEC.defaults())
    assert torch.equal(_run(module, script_args=off, sampler_name="Euler", steps=4).latents, baseline)
    _assert_same(_snapshot(unet), before)
    # the same, when the next generation does not even run our script: the armed callback sees another
    # generation's denoiser and releases before its first UNet call
    module.CONTROLLER.release()
    handle = _raise_at(unet, 2)
    p = processing.StableDiffusionProcessingTxt2Img(prompt="a cat", negative_prompt="blurry", seed=1, steps=4,
                                                    width=64, height=64, sampler_name="Euler", scheduler="Automatic")
    p.scripts = scripts.ScriptRunner([module.HiDiffusionScript()], arg_counts=[len(module.SPEC.fields)])
    p.script_args = [0, *_args(module)]
    try:
        with pytest.raises(_Boom):
            processing.process_images(p)
    finally:
        handle.remove()
    assert H.is_patched(unet) and module.CONTROLLER.state.armed and _our_denoiser_callbacks(module)
    assert torch.equal(txt2img(sampler_name="Euler", steps=4).latents, baseline)
    _assert_same(_snapshot(unet), before)


def test_interrupt_then_baseline(module):
    load_model("sd15")
    unet = _unet()
    before = _snapshot(unet)
    baseline = txt2img(sampler_name="Euler", steps=4).latents
    calls = []

    def interrupt(params):
        calls.append(1)
        if len(calls) == 2:
            shared.state.interrupted = True

    script_callbacks.on_cfg_denoiser(interrupt)
    try:
        _run(module, sampler_name="Euler", steps=4)
    finally:
        script_callbacks.remove_callbacks_for_function(interrupt)
    assert len(calls) == 2
    _assert_same(_snapshot(unet), before)
    shared.state.interrupted = False
    assert torch.equal(_run(module, script_args=module.SPEC.positional(module.SPEC.defaults()),
                            sampler_name="Euler", steps=4).latents, baseline)


def test_script_unload_and_reload_leave_nothing_behind(module):
    """'Reload UI' re-executes the file: still one set of this file's callbacks; on_script_unloaded (called by
    the WebUI before reloading) removes live patches."""
    load_model("sd15")
    count = {k: len(v) for k, v in script_callbacks.callback_map.items()}
    again = load_script(SCRIPT_FILE)
    assert {k: len(v) for k, v in script_callbacks.callback_map.items()} == count
    config = again.pass_config(again.SPEC.replace(again.SPEC.defaults(), enabled=True), _unet(), (8, 8), False)
    again.CONTROLLER.arm(processing.StableDiffusionProcessingTxt2Img(seed=1), _unet(), None, config, (False, None))
    assert H.is_patched(_unet()) and len(_our_denoiser_callbacks(again)) == 1
    script_callbacks.script_unloaded_callback()
    assert not H.is_patched(_unet()) and not again.CONTROLLER.state.armed and not _our_denoiser_callbacks(again)


# --- sizes -------------------------------------------------------------------------------------------------
SIZES = [(72, 64), (64, 72), (120, 64), (64, 120), (88, 104), (104, 88), (136, 72), (72, 136)]


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_size_sweep(module, family, monkeypatch):
    """Non-square sizes (multiples of 8 px, both orientations, odd latent sides 9, 11, 13, 15, 17) run with
    RAU-Net and MSW-MSA: at every size a probe shows RAD and the pool pair ran exactly at the steps of the rule
    (3 Euler steps, T1 0.7 / T2 0.4, not aggressive: each stage runs, alone or together, and stops) and every
    windowed attn1 ran on windows at every UNet call; no "skipped" warning fired (every warn_once call is
    recorded: the logger only sees a key's first warning per state)."""
    warnings = []
    real_warn = module.CONTROLLER.state.warn_once
    monkeypatch.setattr(module.CONTROLLER.state, "warn_once",
                        lambda key, message: (warnings.append(message), real_warn(key, message)))
    load_model(family)
    unet = _unet()
    args = _args(module, timing="Fraction of steps", t1=0.7, t2=0.4, aggressive="Off")
    truth = StepTruth(monkeypatch, unet)
    try:
        for width, height in SIZES:
            hw = (height // 8, width // 8)
            config = H.make_config(unet, hw, family, t1=0.7, t2=0.4, aggressive=False)
            probe = PhaseProbe.for_config(unet, config)
            truth.reset()
            try:
                result = _run(module, script_args=args, sampler_name="Euler", steps=3, width=width, height=height)
            finally:
                probe.close()
            assert result.latents.shape[-2:] == hw
            assert torch.isfinite(result.latents).all(), (family, width, height)
            expected = [tuple(H.rau_active(i, 3, config)) for i, _ in truth.calls]
            assert probe.phases() == expected, (family, width, height)
            assert {True} == {r for r, _ in expected[:1]} and {p for _, p in expected} == {True, False}
            assert expected[-1] == (False, False) and len(set(expected)) == 3
            n = len(config.blocks.window_blocks)
            assert {(c["windows"], c["attn1"]) for c in probe.calls} == {(n, n)}, (family, width, height)
    finally:
        truth.close()
    assert not [w for w in warnings if "skipped" in w]


def test_ssd1b_generation(module, monkeypatch):
    """SSD-1B (an SDXL checkpoint the WebUI reduces in sd_hijack.convert_sdxl_to_ssd): a generation with the
    defaults (Auto: SDXL, aggressive) runs; every UNet call windows the 8 windowed attn1 that remain, RAD and the
    pool pair follow the official rule; the reduced UNet is left unpatched (checked by the fixture)."""
    to_ssd1b_model(load_model("sdxl"))
    unet = _unet()
    config = H.make_config(unet, (8, 8), "sdxl")
    truth, probe = StepTruth(monkeypatch, unet), PhaseProbe.for_config(unet, config)
    try:
        result = _run(module, sampler_name="Euler", steps=10)
    finally:
        probe.close()
        truth.close()
    assert torch.isfinite(result.latents).all()
    assert probe.phases() == [tuple(H.rau_active(i, 10, config)) for i, _ in truth.calls]
    assert {(c["windows"], c["attn1"]) for c in probe.calls} == {(8, 8)}
    assert any(r for r, _ in probe.phases()) and any(p for _, p in probe.phases())


# --- API, infotext, UI, X/Y/Z ----------------------------------------------------------------------------------
def test_api_dict_equals_positional(module):
    load_model("sd15")
    spec = module.SPEC
    chosen = dict(enabled=True, model="SD 1.5", timing="Fraction of steps", t1=0.5, t2=0.25, shift="Seeded")
    positional = spec.positional(spec.replace(spec.defaults(), **chosen))
    # the API puts the dict where the script's args start; the other slots keep the UI defaults
    as_dict = [chosen] + spec.positional(spec.defaults())[1:]
    a = _run(module, script_args=positional, sampler_name="Euler", steps=4)
    b = _run(module, script_args=as_dict, sampler_name="Euler", steps=4)
    assert torch.equal(a.latents, b.latents) and a.infotexts == b.infotexts
    assert "HiDiffusion T1: 0.5" in a.infotexts[0]


@pytest.mark.parametrize("given,field", [({"enabled": True, "t3": 0.5}, "t3"),
                                         ({"enabled": True, "t1": "soon"}, "t1"),
                                         ({"enabled": True, "model": "SD 3"}, "model"),
                                         ({"enabled": True, "rau_net": "yes"}, "rau_net")])
def test_api_errors_name_the_field_before_sampling(module, given, field):
    load_model("sd15")
    calls = []
    handle = _unet().register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        with pytest.raises(ValueError, match=f"'{field}'"):
            _run(module, script_args=[given], sampler_name="Euler", steps=3)
    finally:
        handle.remove()
    assert not calls  # stopped before sampling


@pytest.mark.parametrize("changes,message", [
    (dict(model="SDXL-Turbo"), "does not match the UNet layout"),
    (dict(aggressive="On"), "aggressive"),
    (dict(timing="Fraction of steps", t1=5.0), "'t1'.*fraction"),
    (dict(timing="Steps", t1=5.0, t2=2.5), "'t2'.*whole number"),
])
def test_option_errors_stop_before_sampling(module, changes, message):
    load_model("sd15")
    with pytest.raises(ValueError, match=message):
        _run(module, script_args=_args(module, **changes), sampler_name="Euler", steps=3)


def test_family_override_turbo_on_sdxl(module, monkeypatch):
    """SDXL-Turbo (chosen; not detectable): the pool pair only, for int(0.5 N) steps, no RAD."""
    load_model("sdxl")
    unet = _unet()
    truth, probe = StepTruth(monkeypatch, unet), PhaseProbe(unet, rad_input=6, pool_input=4)
    try:
        _run(module, script_args=_args(module, model="SDXL-Turbo"), sampler_name="Euler", steps=4)
        assert probe.phases() == [(False, i < 2) for i, _ in truth.calls]
    finally:
        probe.close()
        truth.close()


def test_infotext_written_and_restored_on_paste(module):
    load_model("sd15")
    spec = module.SPEC
    with gr.Blocks():
        controls = module.HiDiffusionScript().ui(False)
    script = module.HiDiffusionScript()
    script.infotext_fields = spec.paste_fields(controls)
    chosen = spec.replace(spec.defaults(), enabled=True, model="SD 2.1", msw_msa=False, timing="Steps", t1=7.0,
                          t2=3.0, aggressive="Off", hires_rau_net=True, shift="Official random")
    result = _run(module, script_args=spec.positional(chosen), sampler_name="Euler", steps=3)
    text = result.infotexts[0]
    assert "HiDiffusion: True" in text and "HiDiffusion model: SD 2.1" in text and "HiDiffusion T1: 7.0" in text
    ui_values = [c.value for c in controls]
    pasted = infotext_utils.paste(text, script.infotext_fields)
    restored = [old if new is None else new for old, new in zip(ui_values, pasted)]
    assert spec.parse(restored) == chosen
    # Auto timing: T1/T2 carry no meaning and are not written; paste leaves those controls as they are
    auto = _run(module, sampler_name="Euler", steps=3).infotexts[0]
    assert "HiDiffusion: True" in auto and "HiDiffusion T1" not in auto
    restored = infotext_utils.paste(auto, script.infotext_fields)
    assert restored[0] is True and restored[spec.fields.index(spec.by_name["t1"])] is None
    # an infotext without HiDiffusion turns it off
    plain = txt2img(sampler_name="Euler", steps=3).infotexts[0]
    assert infotext_utils.paste(plain, script.infotext_fields)[0] is False


def test_ui_builds_with_real_gradio(module):
    with gr.Blocks():
        controls = module.HiDiffusionScript().ui(True)
    assert len(controls) == len(module.SPEC.fields)
    values = [c.value for c in controls]
    assert module.SPEC.parse(values) == module.SPEC.defaults()
    kinds = {f.name: type(c).__name__ for f, c in zip(module.SPEC.fields, controls)}
    assert kinds["model"] == "Dropdown" and kinds["timing"] == "Radio" and kinds["t1"] == "Number"
    assert kinds["rau_net"] == "Checkbox"


def test_xyz_axes_apply(module, monkeypatch):
    load_fast_sd15()
    xyz = xyz_grid_double.install()
    added = module.register_axes()
    labels = {a.label for a in xyz.axis_options}
    for name in ("Model family", "RAU-Net", "MSW-MSA", "T1/T2 given as", "T1", "T2", "Window shift",
                 "Aggressive schedule (SDXL)", "RAU-Net in hires pass"):
        assert f"HiDiffusion {name}" in labels
    assert module.register_axes() == []  # idempotent
    assert added
    unet = _unet()
    truth, probe = StepTruth(monkeypatch, unet), PhaseProbe(unet)
    try:
        def hook(p):
            xyz_grid_double.run_axis(xyz, p, "HiDiffusion T1/T2 given as", ["Steps"])
            xyz_grid_double.run_axis(xyz, p, "HiDiffusion T1", ["3"])
        off = module.SPEC.positional(module.SPEC.defaults())
        result = _run(module, script_args=off, p_hook=hook, sampler_name="Euler", steps=10)
        assert "HiDiffusion T1: 3.0" in result.infotexts[0]  # the axis value enabled it
        assert [r for r, _ in probe.phases()] == [i < 3 for i, _ in truth.calls]
    finally:
        probe.close()
        truth.close()


# --- neighbours and hires ------------------------------------------------------------------------------------
HYPERTILE_KEYS = ("hypertile_enable_unet", "hypertile_enable_unet_secondpass")


def _register_hypertile(monkeypatch):
    """What the built-in HyperTile extension's on_ui_settings registers (undone after the test)."""
    for key in HYPERTILE_KEYS:
        monkeypatch.setitem(shared.opts.data_labels, key, shared.OptionInfo(False, key))
        shared.opts.data[key] = False


@pytest.mark.parametrize("setting,hires,match", [
    ("hypertile_enable_unet", False, "HyperTile"),
    ("hypertile_enable_unet_secondpass", True, "HyperTile"),
    ("token_merging_ratio", False, "token merging"),
    ("token_merging_ratio_hr", True, "token merging"),
])
def test_hypertile_and_tome_refused_with_msw_msa(module, monkeypatch, setting, hires, match):
    load_model("sd15")
    _register_hypertile(monkeypatch)
    shared.opts.data[setting] = 0.5 if "token" in setting else True
    fields = dict(enable_hr=True, hr_scale=1.5) if hires else {}
    with pytest.raises(ValueError, match=match):
        _run(module, sampler_name="Euler", steps=3, **fields)
    # RAU-Net alone is allowed
    result = _run(module, script_args=_args(module, msw_msa=False), sampler_name="Euler", steps=3, **fields)
    assert torch.isfinite(result.latents).all()
    if not hires:  # the second-pass settings alone do not concern a generation without hires fix
        return
    shared.opts.data[setting] = False if "hypertile" in setting else 0.0
    assert torch.isfinite(_run(module, sampler_name="Euler", steps=3, **fields).latents).all()


def test_hypertile_setting_of_an_unloaded_extension_is_ignored(module, monkeypatch):
    load_model("sd15")
    for key in HYPERTILE_KEYS:
        monkeypatch.delitem(shared.opts.data_labels, key, raising=False)
    shared.opts.data["hypertile_enable_unet"] = True  # left in config.json, extension not loaded
    assert torch.isfinite(_run(module, sampler_name="Euler", steps=3).latents).all()


@pytest.mark.parametrize("keep", [False, True])
def test_hires_pass(module, monkeypatch, keep):
    """First pass: RAU-Net and MSW-MSA. Hires pass: MSW-MSA on; RAU-Net only with 'RAU-Net in hires pass',
    then on the hires pass's own schedule (its steps run) and latent size."""
    load_model("sd15")
    unet = _unet()
    probe = PhaseProbe(unet, window_attn=unet.input_blocks[1][1].transformer_blocks[0].attn1)
    try:
        result = _run(module, script_args=_args(module, hires_rau_net=keep), sampler_name="Euler", steps=5,
                      enable_hr=True, hr_scale=2.0, denoising_strength=0.6)
        assert result.latents.shape[-1] == 16
        first, second = probe.calls[:5], probe.calls[5:]
        assert len(second) == 5  # the hires pass runs all its (hr_second_pass_steps or steps) steps
        assert [c["rad"] for c in first] == [i < 2 for i in range(5)]  # sd15_1024 preset: T1 0.4
        assert all(c["windowed"] for c in first + second)
        assert [c["rad"] for c in second] == ([i < 2 for i in range(5)] if keep else [False] * 5)
        assert {c["pool_hw"] for c in second} == {(8, 8)} | ({(4, 4)} if keep else set())  # the hires latent
    finally:
        probe.close()
