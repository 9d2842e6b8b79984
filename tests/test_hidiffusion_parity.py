"""Parity of lib_hidiffusion (ldm UNet) with the official ``hidiffusion`` 0.1.10 (diffusers UNet).

Both UNets carry the same tiny random weights (diffusers' own ldm->diffusers converter). Each schedule test
runs selected steps i of an N-step generation: the official patched UNet gets its per-module call counters
set to i (= i earlier calls, one call per step as in a diffusers pipeline with batched CFG; the counting
itself is checked call by call in test_hidiffusion_core), ours gets ``state.set_step(i, N)``. At every step
the outputs must agree within fp32 atol 1e-4 x the output magnitude, and the test asserts which steps are in
which phase (and that active phases really change the output), so no case passes vacuously.

Latents 32x32 / 32x64 (SD1.5: RAD level 1 = 8x8, pooled 4x4, bottom 1x1) and 32x48 (SDXL):
small enough to be fast; the official code takes its RAU-Net branches at any size (its size thresholds only
pick T1/T2 and the aggressive mode), and its MSW-MSA at any even feature size.
"""
import pytest
import torch

import lib_hidiffusion as H
from support.hidiffusion_oracle import (fixed_official_shift, official_apply, official_set_step,
                                        official_settings, to_diffusers, webui_cat_hijack)
from support.tiny_models import make_context, make_unet

@pytest.fixture(autouse=True)
def _no_grad():
    """Inference only, for this module's tests (a module-level set_grad_enabled would leak into other modules)."""
    with torch.no_grad():
        yield


def _inputs(family, hw, n_steps, batch=1, seed=3):
    gen = torch.Generator().manual_seed(seed)
    xs = [torch.randn(batch, 4, *hw, generator=gen) for _ in range(n_steps)]
    ts = torch.linspace(999, 1, n_steps)
    ctx = make_context(family if family != "sdxl_turbo" else "sdxl", batch=batch)
    return xs, ts, ctx


def _ldm_call(unet, family, x, t, ctx):
    context = [ctx] * 2 if family.startswith("sdxl") else ctx
    return unet(x, t.expand(x.shape[0]), context=context)


def _pair(family, sharpen=1.0):
    """ldm UNet and its diffusers copy. ``sharpen`` scales every attn1 query/key weight: with the tiny random
    weights self-attention is almost uniform, so windowing would barely change the output (a parity check
    of MSW-MSA would then pass without windows); sharpened attention makes windows matter."""
    unet = make_unet("sdxl" if family.startswith("sdxl") else family, seed=11)
    if sharpen != 1.0:
        for name, param in unet.named_parameters():
            if ".attn1.to_q." in name or ".attn1.to_k." in name:
                param.mul_(sharpen)
            elif ".attn1.to_v." in name or ".attn1.to_out." in name:
                param.mul_(sharpen ** 0.5)
    return unet, to_diffusers(unet, family)


def run_schedule(family, hw, n_steps, steps, official_kwargs, our_kwargs, settings=None, shift=None, batch=1,
                 sharpen=1.0, official_shift=None):
    """Runs ``steps`` of an N-step generation on both sides; returns per step (phase, max |ours - official|,
    scale, max |ours - unpatched|)."""
    unet, dunet = _pair(family, sharpen)
    xs, ts, ctx = _inputs(family, hw, n_steps, batch=batch)
    config = H.make_config(unet, hw, family, shift_mode="fixed" if shift is not None else "seeded",
                           fixed_shift=shift or 0, **our_kwargs)
    base = {i: _ldm_call(unet, family, xs[i], ts[i], ctx) for i in steps}
    state = H.HiDiffusionState()
    H.apply(unet, config, state)
    state.arm(seed=0)
    rows = []
    try:
        with official_settings(**(settings or {})):
            official_apply(dunet, family, n_steps, **official_kwargs)
            for i in steps:
                x, t = xs[i], ts[i]
                official_set_step(dunet, i)
                with fixed_official_shift(official_shift if official_shift is not None else (shift or 0)):
                    ref = dunet(x, t.expand(x.shape[0]), encoder_hidden_states=ctx).sample
                phase = state.set_step(i, n_steps)
                ours = _ldm_call(unet, family, x, t, ctx)
                rows.append((phase, (ours - ref).abs().max().item(), ref.abs().max().item(),
                             (ours - base[i]).abs().max().item()))
    finally:
        state.disarm()
        H.remove(unet)
    return config, rows


def assert_parity(rows):
    for i, (phase, diff, scale, _) in enumerate(rows):
        assert diff <= 1e-4 * scale, f"step {i} ({phase}): |ours - official| = {diff:.3g}, scale {scale:.3g}"


def test_baseline_outputs_equal():
    """Covers: the converted diffusers UNet equals the ldm UNet before any patch (SD1.5 and SDXL layouts)."""
    for family, hw in (("sd15", (32, 64)), ("sdxl", (32, 48))):
        unet, dunet = _pair(family)
        xs, ts, ctx = _inputs(family, hw, 1, batch=2)
        a = _ldm_call(unet, family, xs[0], ts[0], ctx)
        b = dunet(xs[0], ts[0].expand(2), encoder_hidden_states=ctx).sample
        assert (a - b).abs().max() <= 1e-5 * a.abs().max()


def test_sd15_official_preset_rad_only():
    """Covers SD1.5 below 2048 px with the official preset (T1 0.4, T2 0): of 10 steps, 0 and 3 inside T1
    (RAD at input_blocks[3], RAU at output_blocks[8]), 4 and 9 after; no pool pair."""
    config, rows = run_schedule("sd15", (32, 32), 10, [0, 3, 4, 9], dict(apply_window_attn=False),
                                dict(msw_msa=False))
    assert (config.t1, config.t2, config.aggressive) == (0.4, 0.0, False)
    assert [r[0] for r in rows] == [H.Phase(True, False)] * 2 + [H.Phase(False, False)] * 2
    assert all(r[3] > 1e-3 * r[2] for r in rows[:2]) and all(r[3] == 0 for r in rows[2:])
    assert_parity(rows)


def test_sd15_t1_and_t2_phases():
    """Covers SD1.5 with the 2048-px ratios (T1 0.7, T2 0.3; the official dict entry is patched so the tiny
    latent uses them), non-square latent: of 10 steps, 0 and 2 inside T2 (RAD + avg-pool after
    input_blocks[4] / bicubic after output_blocks[7]), 3 and 6 inside T1 only (RAD/RAU), 7 after both."""
    config, rows = run_schedule("sd15", (32, 64), 10, [0, 2, 3, 6, 7], dict(apply_window_attn=False),
                                dict(msw_msa=False, t1=0.7, t2=0.3),
                                settings=dict(ratios={"sd15_1024": (0.7, 0.3)}))
    assert [r[0] for r in rows] == ([H.Phase(True, True)] * 2 + [H.Phase(True, False)] * 2
                                    + [H.Phase(False, False)])
    assert all(r[3] > 1e-3 * r[2] for r in rows[:4]) and rows[4][3] == 0
    assert_parity(rows)


def test_sdxl_aggressive_schedule():
    """Covers SDXL below 4096 px with the official preset (T1 0.4, aggressive), 20 steps: RAD at
    input_blocks[6] / RAU at output_blocks[2] for steps [0, int(8/50*20)=3) (0, 2 tested), then the
    avg-pool after input_blocks[4] / bicubic after output_blocks[4] for [3, 8) (3, 7), then plain (8)."""
    config, rows = run_schedule("sdxl", (32, 48), 20, [0, 2, 3, 7, 8], dict(apply_window_attn=False),
                                dict(msw_msa=False))
    assert (config.t1, config.t2, config.aggressive) == (0.4, 0.0, True)
    assert [r[0] for r in rows] == ([H.Phase(True, False)] * 2 + [H.Phase(False, True)] * 2
                                    + [H.Phase(False, False)])
    assert all(r[3] > 1e-3 * r[2] for r in rows[:4]) and rows[4][3] == 0
    assert_parity(rows)


def test_sdxl_t1_and_t2_non_aggressive():
    """Covers SDXL with the 4096-px rule (T1 0.7 pool pair, T2 0.3 RAD/RAU, not aggressive; official dict and
    flag patched for the tiny latent), 10 steps: 2 inside T2 (both stages), 3 and 6 inside T1 only (pool)."""
    config, rows = run_schedule("sdxl", (32, 48), 10, [2, 3, 6], dict(apply_window_attn=False),
                                dict(msw_msa=False, t1=0.7, t2=0.3, aggressive=False),
                                settings=dict(ratios={"sdxl_2048": (0.7, 0.3)}, aggressive=False))
    assert [r[0] for r in rows] == [H.Phase(True, True)] + [H.Phase(False, True)] * 2
    assert all(r[3] > 1e-3 * r[2] for r in rows)
    assert_parity(rows)


def test_sdxl_turbo_pool_pair_only():
    """Covers SDXL-Turbo (family override; T1 0.5): of 4 steps, 1 uses the pool pair, 2 is plain; no RAD."""
    config, rows = run_schedule("sdxl_turbo", (32, 48), 4, [1, 2], dict(apply_window_attn=False),
                                dict(msw_msa=False))
    assert config.blocks.rad_input is None
    assert [r[0] for r in rows] == [H.Phase(False, True), H.Phase(False, False)]
    assert rows[0][3] > 1e-3 * rows[0][2] and rows[1][3] == 0
    assert_parity(rows)


@pytest.mark.parametrize("family,hw,steps,shift", [("sd15", (32, 64), [0, 9], 1), ("sd15", (32, 64), [0], 3),
                                                   ("sdxl", (32, 48), [0, 4, 9], 2)])
def test_msw_msa_fixed_shift_with_rau_net(family, hw, steps, shift):
    """Covers MSW-MSA (attn1 of the official top blocks on 2x2 windows, cyclic shift index ``shift``) with
    RAU-Net, batch 2 (as CFG), in and after the RAU-Net phases; SDXL windows also run on pooled features
    (step 4: aggressive pool phase)."""
    config, rows = run_schedule(family, hw, 10, steps, {}, {}, shift=shift, batch=2, sharpen=40.0)
    assert all(r[3] > 1e-3 * r[2] for r in rows)  # windows change the output by > 10x the tolerance
    assert_parity(rows)


def test_msw_msa_parity_detects_a_wrong_shift():
    """Guards the MSW-MSA parity cases: ours at shift 1 vs the official at shift 2 must NOT agree."""
    config, rows = run_schedule("sd15", (32, 64), 10, [9], {}, {}, shift=1, official_shift=2, sharpen=40.0)
    assert rows[0][1] > 1e-4 * rows[0][2]


def test_official_shift_mode_draws_like_official():
    """Covers the 'official' shift mode: with the same global seed our per-block torch.rand draws equal the
    official ones (same order), so outputs agree without fixing the shift. Each seed is one denoiser call
    (``set_step``), which draws anew."""
    unet, dunet = _pair("sd15", sharpen=40.0)
    xs, ts, ctx = _inputs("sd15", (32, 32), 1, batch=2)
    official_apply(dunet, "sd15", 10, apply_raunet=False)
    config = H.make_config(unet, (32, 32), "sd15", rau_net=False, shift_mode="official")
    state = H.HiDiffusionState()
    H.apply(unet, config, state)
    state.arm(0)
    outs = []
    for seed in (5, 6):
        torch.manual_seed(seed)
        ref = dunet(xs[0], ts[0].expand(2), encoder_hidden_states=ctx).sample
        torch.manual_seed(seed)
        state.set_step(0, 10)
        ours = _ldm_call(unet, "sd15", xs[0], ts[0], ctx)
        assert (ours - ref).abs().max() <= 1e-4 * ref.abs().max()
        outs.append(ours)
    H.remove(unet)
    assert (outs[0] - outs[1]).abs().max() > 1e-3 * outs[0].abs().max()  # the seeds drew different shifts


# -- every size: the up path resizes to the skip sizes as the official does ------------------------------------
# Latent (H, W), non-square, sides not multiples of 16 (pixel sizes not multiples of 128), reproducing the
# divisibility cases of real sizes cheaply:
# - 8 x odd (832x1216 -> 104x152 on SD 1.5: RAD 26x38 -> 13x19 -> 7x10, whose 2x upsample is cropped): 24, 40;
# - 16k beside 8 x odd (1344x768 -> 168x96): (24, 32);
# - 4 x odd (SDXL sizes multiple of 32 px, not 64: pooled 33 -> 17, upsampled 34 vs 33): 20, 28, 36;
# - odd latent sides (pixel sizes multiple of 8 only): 13, 27.
SWEEP_SIZES = {"sd15": [(24, 40), (40, 24), (24, 32), (20, 36), (13, 22)],
               "sdxl": [(20, 28), (28, 12), (36, 20), (24, 40), (20, 27), (13, 22)]}
SWEEP_SCHEDULES = {  # name: (family, N, steps, our kwargs, official settings, expected phases)
    "sd15": ("sd15", 10, [0, 3, 7], dict(t1=0.7, t2=0.3), dict(ratios={"sd15_1024": (0.7, 0.3)}),
             [(True, True), (True, False), (False, False)]),
    "sd21": ("sd21", 10, [0, 3, 7], dict(t1=0.7, t2=0.3), dict(ratios={"sd15_1024": (0.7, 0.3)}),
             [(True, True), (True, False), (False, False)]),
    "sdxl_aggressive": ("sdxl", 20, [0, 3, 8], {}, {}, [(True, False), (False, True), (False, False)]),
    "sdxl": ("sdxl", 10, [2, 3, 7], dict(t1=0.7, t2=0.3, aggressive=False),
             dict(ratios={"sdxl_2048": (0.7, 0.3)}, aggressive=False), [(True, True), (False, True), (False, False)]),
}


@pytest.mark.parametrize("name", list(SWEEP_SCHEDULES))
def test_rau_net_parity_at_every_size(name):
    """Covers issue 8 item 3: at latent sizes whose down path rounds up (ceil) somewhere, the official code makes
    every up block interpolate to its skip's size before its conv (``num_upsamplers += 12``); ours must agree
    within 1e-4 x the output magnitude per UNet call at the RAD, RAD+pool and pool steps of SD 1.5, SD 2.1 and
    SDXL (aggressive and not), with the WebUI's torch.cat hijack installed (as in the WebUI). Plain steps keep
    the WebUI's own UNet (bit-identical to unpatched). The phases must really change the output."""
    family, n_steps, steps, our_kwargs, settings, phases = SWEEP_SCHEDULES[name]
    layout = "sdxl" if family.startswith("sdxl") else "sd15"
    unet, dunet = _pair(family)
    worst = 0.0
    with webui_cat_hijack():
        for hw in SWEEP_SIZES[layout]:
            xs, ts, ctx = _inputs(family, hw, n_steps)
            config = H.make_config(unet, hw, family, msw_msa=False, **our_kwargs)
            state = H.HiDiffusionState()
            H.apply(unet, config, state)
            state.arm(seed=0)
            try:
                with official_settings(**settings):
                    official_apply(dunet, family, n_steps, apply_window_attn=False)
                    for i, expected in zip(steps, phases):
                        x, t = xs[i], ts[i]
                        official_set_step(dunet, i)
                        assert tuple(state.set_step(i, n_steps)) == expected, (name, hw, i)
                        ours = _ldm_call(unet, family, x, t, ctx)
                        scale = ours.abs().max().item()
                        state.disarm()
                        base = _ldm_call(unet, family, x, t, ctx)
                        state.arm(seed=0)
                        if not any(expected):
                            assert torch.equal(ours, base), (name, hw, i)
                            continue
                        assert (ours - base).abs().max() > 1e-3 * scale, (name, hw, i)  # the phase ran
                        ref = dunet(x, t.expand(1), encoder_hidden_states=ctx).sample
                        diff = (ours - ref).abs().max().item()
                        worst = max(worst, diff / scale)
                        assert diff <= 1e-4 * scale, f"{name} {hw} step {i} {expected}: rel {diff / scale:.3g}"
            finally:
                state.disarm()
                H.remove(unet)
                from hidiffusion import remove_hidiffusion
                remove_hidiffusion(dunet)
    print(f"{name}: worst relative difference {worst:.3g}")
