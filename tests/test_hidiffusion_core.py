"""lib_hidiffusion core behaviour on tiny ldm UNets: exact restore, inert when disarmed, reproducible shifts,
any WebUI size, and the RAU-Net schedule against the official rule.

The schedule tests run the official ``hidiffusion`` (diffusers UNet, counters per call, one call per
step) and record, per call, whether its resolution-aware conv (stride 4) and its avg-pool ran.
"""
import inspect
import logging

import pytest
import torch
import torch.nn.functional as F

import lib_hidiffusion as H
from lib_hidiffusion import wrap
from support.hidiffusion_oracle import (minimal_diffusers_unet, official_apply, official_module,
                                        webui_cat_hijack)
from support.hidiffusion_webui_probe import PhaseProbe
from support.kdiffusion_import import import_k_diffusion
from support.ssd1b import SSD_DELETED_WINDOW_BLOCKS, to_ssd1b
from support.tiling import apply_circular
from support.tiny_models import make_context, make_unet

@pytest.fixture(autouse=True)
def _no_grad():
    """Inference only, for this module's tests (a module-level set_grad_enabled would leak into other modules)."""
    with torch.no_grad():
        yield


def _call(unet, family, x, t=500.0, seed=1):
    ctx = make_context(family, batch=x.shape[0], seed=seed)
    context = [ctx] * 2 if family == "sdxl" else ctx
    return unet(x, torch.full((x.shape[0],), t), context=context)


def _snapshot(unet):
    """Module tree, classes, instance __dict__ keys (incl. any instance forward), conv geometry, weights."""
    tree = [(name, type(m), sorted(k for k in m.__dict__ if not k.startswith("_")) , "forward" in m.__dict__,
             getattr(m, "stride", None), getattr(m, "padding", None), getattr(m, "dilation", None))
            for name, m in unet.named_modules()]
    return tree, {k: v.clone() for k, v in unet.state_dict().items()}


def _same(a, b):
    assert a[0] == b[0]
    assert a[1].keys() == b[1].keys() and all(torch.equal(a[1][k], b[1][k]) for k in a[1])


def _patched(family, hw, **kwargs):
    unet = make_unet(family, seed=2)
    config = H.make_config(unet, hw, family, **kwargs)
    state = H.HiDiffusionState()
    return unet, config, state


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_remove_restores_exactly(family):
    """apply + a generation in every phase + remove: module tree, instance dicts, forwards, conv attributes and
    weights as before, output bit-identical to never patched; remove is idempotent."""
    unet, config, state = _patched(family, (32, 32), t1=0.7, t2=0.3, aggressive=False)
    x = torch.randn(2, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    before, base = _snapshot(unet), _call(unet, family, x)
    forwards = {name: m.forward for name, m in unet.named_modules()}
    names = H.apply(unet, config, state)
    assert len(names) >= 14 and H.is_patched(unet)
    state.arm(seed=1)
    for step in range(10):
        state.set_step(step, 10)
        _call(unet, family, x)
    state.disarm()
    assert H.remove(unet) == len(names)
    assert H.remove(unet) == 0 and not H.is_patched(unet)
    _same(_snapshot(unet), before)
    assert all(m.forward == forwards[name] for name, m in unet.named_modules())
    assert torch.equal(_call(unet, family, x), base)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_inert_when_disarmed(family):
    """Patched but not armed, armed without a step (RAU-Net off, MSW-MSA on), and disarmed after use:
    disarmed outputs are bit-identical to the unpatched UNet."""
    unet, config, state = _patched(family, (32, 32), t1=0.7, t2=0.3, aggressive=False)
    x = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    base = _call(unet, family, x)
    H.apply(unet, config, state)
    assert torch.equal(_call(unet, family, x), base)
    state.arm(seed=3)
    msw_only = _call(unet, family, x)
    assert not torch.equal(msw_only, base)
    state.set_step(0, 10)
    assert state.phase == H.Phase(True, True)
    assert not torch.equal(_call(unet, family, x), msw_only)
    state.disarm()
    assert torch.equal(_call(unet, family, x), base)
    H.remove(unet)


def test_heal_after_crash_inside_rad():
    """An exception inside the stride-4 conv (a hook raising, as an interrupt would) leaves the conv geometry
    restored; the stale patch (state still armed) is healed by remove(): next output = baseline bit for bit."""
    unet, config, state = _patched("sd15", (32, 32), t1=0.7, t2=0.3)
    x = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    before, base = _snapshot(unet), _call(unet, "sd15", x)
    H.apply(unet, config, state)
    state.arm(seed=0)
    state.set_step(0, 10)
    op = unet.input_blocks[3][0].op

    def interrupt(module, args):
        assert module.stride == (4, 4)
        raise KeyboardInterrupt("interrupted")

    handle = op.register_forward_pre_hook(interrupt)
    with pytest.raises(KeyboardInterrupt):
        _call(unet, "sd15", x)
    handle.remove()
    assert (op.stride, op.padding, op.dilation) == ((2, 2), (1, 1), (1, 1))
    # the generation crashed: nobody disarmed; the next generation heals first
    assert state.armed and H.remove(unet) > 0
    _same(_snapshot(unet), before)
    assert torch.equal(_call(unet, "sd15", x), base)


def test_apply_twice_and_foreign_instance_forward_restored():
    """apply() twice without remove stacks nothing; an instance forward set by someone else before us is
    restored as it was (ours removed from above it)."""
    unet, config, state = _patched("sd15", (32, 32))
    attn1 = unet.input_blocks[1][1].transformer_blocks[0].attn1
    calls = []

    def foreign(x, *args, **kwargs):
        calls.append(x.shape)
        return type(attn1).forward(attn1, x, *args, **kwargs)

    attn1.forward = foreign
    H.apply(unet, config, state)
    H.apply(unet, config, state)
    assert getattr(attn1.forward, wrap.MARK) == "msw"
    assert attn1.forward._hidiffusion_previous is foreign
    state.arm(0)
    _call(unet, "sd15", torch.randn(1, 4, 32, 32))
    assert calls[-1][0] == 4  # the foreign forward (the "host attention") ran on 4 windows
    H.remove(unet)
    assert attn1.__dict__["forward"] is foreign


def test_rad_calls_the_conv_module_itself():
    """RAD goes through the Downsample's conv module with stride 4 / padding 2 / dilation 2, so class-level
    conv patches (the WebUI's LoRA patches nn.Conv2d.forward) still run; output size is ceil(H / 4)."""
    unet, config, state = _patched("sd15", (32, 32))
    seen = []
    real = torch.nn.Conv2d.forward

    def lora_like(self, x):
        seen.append((self.stride, self.padding, self.dilation, tuple(x.shape[-2:])))
        return real(self, x)

    H.apply(unet, config, state)
    state.arm(0)
    state.set_step(0, 10)
    torch.nn.Conv2d.forward = lora_like
    try:
        out = unet.input_blocks[3][0](torch.randn(1, 32, 30, 26))
    finally:
        torch.nn.Conv2d.forward = real
    H.remove(unet)
    assert seen == [((4, 4), (2, 2), (2, 2), (30, 26))]
    assert out.shape[-2:] == (8, 7)


def test_rad_wraps_circularly_with_tiling():
    """The WebUI's Tiling sets padding_mode='circular' on every Conv2d; such a conv ignores a changed `padding`.
    In the RAD phase the stride-4 / dilation-2 conv must wrap with the official padding 2 like the rest of the
    UNet: its output equals conv(circular_pad(x, 2)) at every size (incl. 30x26, where the construction-time
    padding 1 would give fewer rows and columns), the conv geometry and mode are restored after each call, and
    the tiled UNet is bit-identical to unpatched once removed."""
    unet, config, state = _patched("sd15", (60, 52), msw_msa=False)
    assert apply_circular(unet) > 20
    down = unet.input_blocks[3][0]
    op = down.op
    seen = []
    handle = down.register_forward_hook(lambda module, args, out: seen.append((args[0], out)))
    x = torch.randn(1, 4, 60, 52, generator=torch.Generator().manual_seed(0))
    base = _call(unet, "sd15", x)
    H.apply(unet, config, state)
    state.arm(0)
    try:
        for hw in ((60, 52), (30, 26), (26, 34)):
            seen.clear()
            state.set_step(0, 10)
            out = _call(unet, "sd15", torch.randn(1, 4, *hw, generator=torch.Generator().manual_seed(1)))
            assert out.shape[-2:] == hw and torch.isfinite(out).all()
            (inp, rad), = seen
            ref = F.conv2d(F.pad(inp, (2, 2, 2, 2), mode="circular"), op.weight, op.bias, stride=4, dilation=2)
            assert rad.shape[-2:] == (-(-inp.shape[-2] // 4), -(-inp.shape[-1] // 4)), hw
            assert torch.allclose(rad, ref, rtol=0, atol=1e-6), hw
            assert (op.stride, op.padding, op.dilation, op.padding_mode) == ((2, 2), (1, 1), (1, 1), "circular")
    finally:
        handle.remove()
        state.disarm()
        H.remove(unet)
    assert torch.equal(_call(unet, "sd15", x), base)


def test_shift_deterministic_per_seed_and_step():
    """Seeded shifts: same (seed, step) -> same shifts (fresh state, any call order); different seeds give
    different shift sequences; whole-UNet outputs reproduce bit for bit and differ between seeds."""
    def shifts(seed, steps=8, n=10):
        state = H.HiDiffusionState()
        state.config = H.make_config(make_unet("sdxl"), (32, 32))
        state.arm(seed)
        out = []
        for step in steps if isinstance(steps, list) else range(steps):
            state.set_step(step, 20)
            out.append([state.shift_index(i, n) for i in range(n)])
        return out

    assert shifts(7) == shifts(7)
    assert shifts(7, steps=[5, 3])[0] == shifts(7)[5]
    assert len({str(shifts(s)) for s in range(6)}) == 6
    assert all(k in range(4) for row in shifts(7) for k in row)

    unet, config, state = _patched("sd15", (32, 32), rau_net=False)
    H.apply(unet, config, state)
    x = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    outs = {}
    for seed in (1, 1, 2, 3):
        state.arm(seed)
        state.set_step(4, 20)
        outs.setdefault(seed, []).append(_call(unet, "sd15", x))
    H.remove(unet)
    assert torch.equal(outs[1][0], outs[1][1])
    assert not torch.equal(outs[1][0], outs[2][0]) and not torch.equal(outs[1][0], outs[3][0])


@pytest.mark.parametrize("mode", ["seeded", "official"])
def test_split_cond_uncond_calls_share_the_step_shift(mode, monkeypatch):
    """The WebUI runs cond and uncond rows as separate UNet calls when the prompts' token lengths differ; the
    official code batches them under one shift per call. One denoiser step (one set_step) therefore draws each
    windowed block's shift once: both calls get the same shifts (seeded and official modes), and the batched
    call equals the cond call and the uncond call concatenated. In official mode the batched call draws exactly
    as before (same global-RNG values in block order); the next set_step draws anew."""
    from lib_hidiffusion import msw_msa
    unet, config, state = _patched("sdxl", (16, 16), shift_mode=mode)
    shifts = []
    real = msw_msa.window_partition

    def recording(x, hw, shift_index):
        shifts.append(shift_index)
        return real(x, hw, shift_index)

    monkeypatch.setattr(msw_msa, "window_partition", recording)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 16, 16, generator=gen)
    ctx = [torch.randn(2, 77, 2048, generator=gen) * 3] * 2
    t = torch.full((2,), 500.0)
    n = len(config.blocks.window_blocks)
    H.apply(unet, config, state)
    state.arm(seed=5)
    try:
        state.set_step(1, 10)
        torch.manual_seed(123)
        batched = unet(x, t, context=ctx)
        batched_shifts, shifts[:] = list(shifts), []
        state.set_step(1, 10)
        torch.manual_seed(123)
        cond = unet(x[:1], t[:1], context=[c[:1] for c in ctx])
        uncond = unet(x[1:], t[1:], context=[c[1:] for c in ctx])
        split_shifts, shifts[:] = list(shifts), []
        state.set_step(1, 10)  # the next denoiser call draws again (official: new values; seeded: same step)
        unet(x[:1], t[:1], context=[c[:1] for c in ctx])
        next_shifts = list(shifts)
    finally:
        state.disarm()
        H.remove(unet)
    assert len(batched_shifts) == n and split_shifts == batched_shifts * 2
    assert torch.allclose(torch.cat([cond, uncond]), batched, rtol=0, atol=1e-6 * batched.abs().max())
    if mode == "official":
        torch.manual_seed(123)
        draws = [float(torch.rand(1)) for _ in range(n)]
        assert batched_shifts == [0 if r <= 0.25 else 1 if r <= 0.5 else 2 if r <= 0.75 else 3 for r in draws]
        assert next_shifts != batched_shifts  # not frozen: the global RNG moved on
    else:
        assert next_shifts == batched_shifts


def test_window_partition_roundtrip():
    """Partition/reverse is an exact inverse (even, odd, shifted); windows are 2x2 of ceil(H/2) x ceil(W/2)."""
    from lib_hidiffusion.msw_msa import window_partition, window_reverse
    for h, w in ((8, 12), (7, 12), (9, 5), (2, 3)):
        x = torch.randn(3, h * w, 5)
        for k in range(4):
            windows, meta = window_partition(x, (h, w), k)
            assert windows.shape == (12, ((h + 1) // 2) * ((w + 1) // 2), 5)
            assert torch.equal(window_reverse(windows, meta), x)


SIZES = [(64, 104), (104, 64), (72, 120), (120, 72), (136, 88), (88, 136), (200, 56), (56, 200)]


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_size_sweep(family, caplog):
    """Non-square pixel sizes (multiples of 8, both orientations, odd latent sides 13, 9, 17, 11, 25, 7) run in
    every phase with the WebUI's torch.cat hijack (as in the WebUI): output shape = input, finite. A probe shows
    that at every size and step the RAD conv (stride 4) and the avg-pool ran exactly in their phases and that
    every windowed attn1 ran on 4 windows; no "skipped" warning fired; odd window sizes warn once through the
    'hidiffusion' logger."""
    unet = make_unet(family, seed=2)
    gen = torch.Generator().manual_seed(0)
    caplog.set_level(logging.WARNING, logger="hidiffusion")
    state = H.HiDiffusionState()
    seen = set()
    with webui_cat_hijack():
        for width, height in SIZES:
            hw = (height // 8, width // 8)
            for kwargs in (dict(t1=0.7, t2=0.3, aggressive=False), {}):
                config = H.make_config(unet, hw, family, **kwargs)
                H.apply(unet, config, state)
                probe = PhaseProbe.for_config(unet, config)
                state.arm(seed=width)
                x = torch.randn(1, 4, *hw, generator=gen)
                expected = []
                try:
                    for step in (0, 2, 4, 9):
                        expected.append(tuple(state.set_step(step, 10)))
                        out = _call(unet, family, x)
                        assert out.shape == x.shape and torch.isfinite(out).all(), (width, height, step)
                finally:
                    probe.close()
                    state.disarm()
                    H.remove(unet)
                assert probe.phases() == expected, (width, height, kwargs)
                n = len(config.blocks.window_blocks)
                assert [(c["windows"], c["attn1"]) for c in probe.calls] == [(n, n)] * len(expected), (width, height)
                seen.update(expected)
    assert seen == {(True, True), (True, False), (False, False)} | ({(False, True)} if family == "sdxl" else set())
    assert not [r for r in caplog.records if "skipped" in r.getMessage()]
    odd = [r for r in caplog.records if "odd" in r.getMessage()]
    assert len(odd) == 1


# -- schedule --------------------------------------------------------------------------------------------

CASES = [  # (family, latent size, official threshold key it exercises)
    ("sd15", (32, 32), "sd15_1024"),
    ("sd15", (256, 256), "sd15_2048"),
    ("sdxl", (32, 32), "sdxl_2048 aggressive"),
    ("sdxl", (512, 512), "sdxl_4096"),
    ("sdxl_turbo", (32, 32), "sdxl_turbo_1024"),
]


class _Recorder:
    """Proxy for the official module's ``F``: records stride-4 convs and avg-pools per UNet call."""

    def __init__(self):
        self.rad = self.pool = False

    def __getattr__(self, name):
        return getattr(F, name)

    def conv2d(self, x, weight, bias=None, stride=1, *args):
        if tuple(stride) == (4, 4):
            self.rad = True
        return F.conv2d(x, weight, bias, stride, *args)

    def avg_pool2d(self, *args, **kwargs):
        self.pool = True
        return F.avg_pool2d(*args, **kwargs)


def official_model(family, size_hw, monkeypatch):
    """An official-patched diffusers UNet whose latent-size rule sees ``size_hw`` (its size hook is replaced
    while the tensors stay small), and the recorder of its RAU-Net activity."""
    dunet = minimal_diffusers_unet("sdxl" if family.startswith("sdxl") else "sd15")
    official_apply(dunet, family, 1, apply_window_attn=False)
    rec = _Recorder()
    monkeypatch.setattr(official_module(), "F", rec)
    dunet.info["hooks"][0].remove()
    dunet.info["size"] = size_hw
    return dunet, rec


def official_phases(dunet, rec, family, total_steps):
    """The official per-step activity over one generation of ``total_steps`` UNet calls (its counters wrap
    to 0 at the end, so generations can follow each other)."""
    dunet._num_timesteps = total_steps
    x = torch.randn(1, 4, 8, 8)
    ctx = torch.randn(1, 4, 16)
    out = []
    for _ in range(total_steps):
        rec.rad = rec.pool = False
        dunet(x, torch.tensor([500.0]), encoder_hidden_states=ctx)
        out.append(H.Phase(rec.rad, rec.pool))
    return out


@pytest.mark.parametrize("family,size_hw,key", CASES)
def test_schedule_matches_official_rule(family, size_hw, key, monkeypatch):
    """rau_active(i, N) equals the official activity at every step for N = 20, 30, 50 (txt2img: all steps
    run) and for img2img at denoise 0.6 (the official counts the steps actually run: WebUI k-diffusion
    runs int(0.6 N) + 1 of them, step indices 0-based among those)."""
    unet = make_unet("sdxl" if family.startswith("sdxl") else family)
    config = H.make_config(unet, size_hw, family)
    dunet, rec = official_model(family, size_hw, monkeypatch)
    for steps in (20, 30, 50):
        for total in (steps, int(0.6 * steps) + 1):
            expected = official_phases(dunet, rec, family, total)
            ours = [H.rau_active(i, total, config) for i in range(total)]
            assert ours == expected, (key, steps, total)
            assert any(p.any for p in ours) and not ours[-1].any


# -- locating the step of a model call -------------------------------------------------------------------

SECOND_ORDER = {"sample_heun", "sample_dpm_2", "sample_dpm_2_ancestral", "sample_dpmpp_2s_ancestral", "sample_dpmpp_sde"}


def _calls_with_truth(monkeypatch, sampler, sigmas, **kwargs):
    """Runs a k-diffusion sampler with a model that records each call's sigma; ground truth: the sampler's own
    loop index at each call (k-diffusion's `trange` wrapped), not anything derived from sigma."""
    k = import_k_diffusion()
    record, truth, index = [], [], [None]
    real_trange = k.sampling.trange

    def trange(n, *args, **kw):
        for i in real_trange(n, *args, **kw):
            index[0] = i
            yield i
    monkeypatch.setattr(k.sampling, "trange", trange)
    monkeypatch.setattr(k.sampling, "torch", torch)  # not a WebUI pass's seeded-noise stand-in left by other tests

    def model(x, sigma, **_):
        record.append(float(sigma[0]))
        truth.append(index[0])
        return x * 0.9

    gen = torch.Generator().manual_seed(0)
    noise = lambda sigma, sigma_next: torch.randn((1, 1, 2, 2), generator=gen)  # noqa: E731
    if "noise_sampler" in inspect.signature(getattr(k.sampling, sampler)).parameters:
        kwargs["noise_sampler"] = noise
    getattr(k.sampling, sampler)(model, torch.ones(1, 1, 2, 2) * sigmas[0], sigmas, disable=True, **kwargs)
    return record, truth


@pytest.mark.parametrize("sampler", ["sample_euler", "sample_euler_ancestral", "sample_lms", "sample_dpmpp_2m",
                                     "sample_dpmpp_2m_sde", "sample_dpmpp_3m_sde", *sorted(SECOND_ORDER)])
@pytest.mark.parametrize("steps", [4, 5, 10, 30])
def test_step_locator(monkeypatch, sampler, steps):
    """StepLocator gives every model call the index of the sampler step it belongs to, told only which steps make a
    second call (Heun's correction at the next sigma, the midpoints of DPM2 / DPM++ SDE, and those of DPM2 a /
    DPM++ 2S a, which at eta 1 land exactly on the next sigma), for txt2img and the img2img tail (denoise 0.6),
    at eta 0 and 1."""
    k = import_k_diffusion()
    sigmas = k.sampling.get_sigmas_karras(steps, 0.03, 14.6)
    t_enc = int(0.6 * steps)
    takes_eta = "eta" in inspect.signature(getattr(k.sampling, sampler)).parameters
    for schedule in (sigmas, sigmas[steps - t_enc - 1:]):
        for eta in (0.0, 1.0) if takes_eta else (None,):
            record, truth = _calls_with_truth(monkeypatch, sampler, schedule, **({} if eta is None else {"eta": eta}))
            locator = H.StepLocator(schedule, second_calls=sampler in SECOND_ORDER)
            assert [locator.locate(s) for s in record] == truth, (eta, list(zip(truth, record)))
            assert locator.total_steps == len(schedule) - 1


@pytest.mark.parametrize("sampler", ["sample_euler", "sample_heun", "sample_dpm_2"])
def test_step_locator_with_sigma_churn(monkeypatch, sampler):
    """Sigma churn: the first call of a step is at σ̂ = σ_i(1 + γ) above σ_i (up to the previous step's σ)."""
    k = import_k_diffusion()
    sigmas = k.sampling.get_sigmas_karras(10, 0.03, 14.6)
    record, truth = _calls_with_truth(monkeypatch, sampler, sigmas, s_churn=5.0)
    assert any(not any(abs(r - s) < 1e-4 * s for s in sigmas.tolist()) for r in record), "churn moved the calls"
    locator = H.StepLocator(sigmas, second_calls=sampler in SECOND_ORDER)
    assert [locator.locate(s) for s in record] == truth


def test_step_locator_second_calls_of_chosen_steps_only():
    """PLMS-like: only step 0 calls twice (at the next value); and an ancestral step that skips its second call."""
    schedule = [801.0, 601.0, 401.0, 201.0, 1.0]
    locator = H.StepLocator(schedule, second_calls=lambda i: i == 0)
    assert [locator.locate(v) for v in (801, 601, 601, 401, 201)] == [0, 0, 1, 2, 3]
    locator = H.StepLocator([4.0, 2.0, 1.0, 0.0], second_calls=lambda i: i != 1)
    assert [locator.locate(v) for v in (4.0, 2.0, 2.0, 1.0, 0.5)] == [0, 0, 1, 2, 2]


# -- presets ---------------------------------------------------------------------------------------------

def test_presets_follow_the_official_tables():
    """Family from structure (+ override), official T1/T2/aggressive by latent size read from the official
    module's own dict and flags, user overrides, and clear errors."""
    official = official_module()
    table = official.switching_threshold_ratio_dict
    sd, xl = make_unet("sd15"), make_unet("sdxl")
    assert H.layout_of(sd) == "sd15" and H.layout_of(make_unet("sd21")) == "sd15" and H.layout_of(xl) == "sdxl"
    cases = [(sd, None, (128, 128), "sd15_1024", False), (sd, None, (255, 400), "sd15_1024", False),
             (sd, "sd21", (256, 256), "sd15_2048", False),
             (xl, None, (256, 256), "sdxl_2048", official.is_aggressive_raunet),
             (xl, None, (512, 512), "sdxl_4096", False), (xl, "sdxl-turbo", (128, 128), "sdxl_turbo_1024", False)]
    for unet, family, hw, key, aggressive in cases:
        config = H.make_config(unet, hw, family)
        assert (config.t1, config.t2, config.aggressive) == (table[key]["T1_ratio"], table[key]["T2_ratio"],
                                                             aggressive), key
    assert official.aggressive_step / 50 == H.make_config(xl, (64, 64)).aggressive_step_ratio
    inpaint = make_unet("sdxl", in_channels=9)
    assert not H.make_config(inpaint, (64, 64)).aggressive  # official: inpainting_is_aggressive_raunet
    custom = H.make_config(xl, (64, 64), t1=0.5, t2=0.2, aggressive=False, msw_msa=False)
    assert (custom.t1, custom.t2, custom.aggressive, custom.msw_msa, custom.rau_net) == (0.5, 0.2, False, False, True)
    with pytest.raises(ValueError, match="does not match"):
        H.make_config(sd, (64, 64), "sdxl")
    with pytest.raises(ValueError, match="unknown model family"):
        H.make_config(sd, (64, 64), "sd3")
    with pytest.raises(ValueError, match="t1"):
        H.make_config(sd, (64, 64), t1=1.5)
    with pytest.raises(ValueError, match="aggressive"):
        H.make_config(sd, (64, 64), aggressive=True)
    refiner_like = make_unet("sd15")
    for i in (1, 2):
        refiner_like.input_blocks[i] = refiner_like.input_blocks[i][:1]
    with pytest.raises(ValueError, match="unsupported UNet layout"):
        H.layout_of(refiner_like)
