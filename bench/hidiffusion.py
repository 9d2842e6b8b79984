"""HiDiffusion speed: MSW-MSA attention, whole UNet forward in the T1 phase, and the cost of a disarmed patch.

An SD1.5-layout ldm UNet with random weights (moderate width: ``model_channels`` 64, heads of 32 channels as
SD1.5's 40, context 768; quick: 32 channels) runs with a WebUI-style SDPA attention installed on ``CrossAttention.forward`` at class
level for the duration of the bench (what the WebUI's default "sdp" optimisation does), restored after.
Latent 128x128 = 4x the native 64x64 area (quick: 64x64). Each pair of sides runs interleaved, order
alternating, and the medians are compared.

Numbers:
- ``msw_msa_attention_ratio``: time of the self-attention (attn1) calls of the 5 windowed blocks with
  MSW-MSA (window partition, host attention on 4 windows, reverse) / the same calls on full tokens.
  The 2x2 limit is 0.25. Target <= 0.30.
- ``hidiffusion_forward_ratio``: whole UNet forward, HiDiffusion armed at step 10 of 20 with the 2048-px
  preset (T1 0.7, T2 0.3): inside T1 only, RAD/RAU and MSW-MSA / unpatched. Target <= 0.5.
  ``hidiffusion_forward_ratio_t2``: the same at step 0 (inside T2: also the avg-pool/bicubic pair).
- ``disabled_overhead_ratio``: the extension loaded but off / never loaded: a whole txt2img generation through
  the WebUI host double (tiny SD1.5 model, 256 px, 8 steps) with the HiDiffusion script attached and disabled
  (its hooks run; the UNet is never patched while off) / the same generation without it. Target <= 1.01.
- ``disarmed_overhead_ratio``: a harsher case that the adapter never leaves in place: whole forward with the
  wrappers installed but disarmed / never patched, at native 64x64 (the cost of the inert wrappers per call).
Plus the medians in seconds, sizes and repeats.
"""
from __future__ import annotations

import contextlib
import statistics
import time

import torch
import torch.nn.functional as F

import lib_hidiffusion as H


def sdp_forward(self, x, context=None, mask=None, **kwargs):
    """WebUI-style SDPA self/cross attention for ldm ``CrossAttention`` (own implementation)."""
    heads = self.heads
    context = x if context is None else context
    q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
    b, n, inner = q.shape
    q, k, v = (t.view(b, -1, heads, inner // heads).transpose(1, 2) for t in (q, k, v))
    if mask is not None:
        mask = mask.view(b, 1, 1, -1).bool()
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, is_causal=False)
    out = out.transpose(1, 2).reshape(b, n, inner).to(x.dtype)
    return self.to_out[1](self.to_out[0](out))


@contextlib.contextmanager
def webui_sdp_attention():
    from ldm.modules.attention import CrossAttention
    saved = CrossAttention.forward
    CrossAttention.forward = sdp_forward
    try:
        yield
    finally:
        CrossAttention.forward = saved


def make_bench_unet(channels: int, seed: int = 0):
    from ldm.modules.diffusionmodules.openaimodel import UNetModel
    unet = UNetModel(image_size=64, in_channels=4, out_channels=4, model_channels=channels, num_res_blocks=2,
                     attention_resolutions=[4, 2, 1], channel_mult=[1, 2, 4, 4], num_head_channels=32,
                     use_spatial_transformer=True, transformer_depth=1, context_dim=768, legacy=False,
                     use_checkpoint=False)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(unet.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    return unet.eval()


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _interleaved(*fns, repeats):
    """Medians of each function over ``repeats`` rounds, order rotating each round; one warm-up each."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for rep in range(repeats):
        order = list(range(len(fns)))
        order = order[rep % len(fns):] + order[:rep % len(fns)]
        for i in (order if rep % 2 == 0 else order[::-1]):
            times[i].append(_timed(fns[i]))
    return tuple(statistics.median(t) for t in times)


def run(quick: bool = False) -> dict:
    channels, side, native, repeats, dis_repeats = (32, 64, 32, 3, 5) if quick else (64, 128, 64, 3, 11)
    torch.manual_seed(0)
    unet = make_bench_unet(channels)
    ctx = torch.randn(1, 77, 768)
    t = torch.tensor([900.0])
    x = torch.randn(1, 4, side, side)
    x_native = torch.randn(1, 4, native, native)
    pixel = side * 8
    result = {"latent_side": side, "native_latent_side": native, "model_channels": channels,
              "repeats": repeats, "threads": torch.get_num_threads()}
    with torch.no_grad(), webui_sdp_attention():
        # 1. attention alone: the windowed attn1 modules, with their real inputs captured from one forward
        config = H.make_config(unet, (side, side), "sd15", t1=0.7, t2=0.3, shift_mode="fixed", fixed_shift=1)
        state = H.HiDiffusionState()
        blocks = [unet.input_blocks[i][1] if part == "input_blocks" else unet.output_blocks[i][1]
                  for part, i, _ in config.blocks.window_blocks]
        inputs = []
        hooks = [b.transformer_blocks[0].attn1.register_forward_pre_hook(lambda m, a: inputs.append(a[0]))
                 for b in blocks]
        unet(x, t, context=ctx)
        for h in hooks:
            h.remove()
        H.apply(unet, config, state)
        state.arm(seed=0)
        state.set_step(0, 20)
        for key, b in enumerate(blocks):
            state.window_hw[key] = (side, side)
        attn = [b.transformer_blocks[0].attn1 for b in blocks]

        def windowed():
            for module, inp in zip(attn, inputs):
                module(inp)

        def full():
            for module, inp in zip(attn, inputs):
                type(module).forward(module, inp)

        t_win, t_full = _interleaved(windowed, full, repeats=repeats)
        result.update(msw_msa_attention_ratio=t_win / t_full, attention_windowed_s=t_win, attention_full_s=t_full)

        # 2. whole forward: step 10 of 20 is inside T1 only (RAD/RAU + MSW-MSA), step 0 also inside T2
        #    (+ avg-pool/bicubic pair), against the unpatched UNet
        H.remove(unet)

        def hidiffusion_forward(step):
            H.apply(unet, config, state)
            state.arm(seed=0)
            state.set_step(step, 20)
            try:
                unet(x, t, context=ctx)
            finally:
                state.disarm()
                H.remove(unet)

        t_t1, t_t2, t_base = _interleaved(lambda: hidiffusion_forward(10), lambda: hidiffusion_forward(0),
                                          lambda: unet(x, t, context=ctx), repeats=repeats)
        result.update(hidiffusion_forward_ratio=t_t1 / t_base, hidiffusion_forward_ratio_t2=t_t2 / t_base,
                      forward_t1_s=t_t1, forward_t2_s=t_t2, forward_baseline_s=t_base, pixel_side=pixel,
                      phase_t1=str(H.rau_active(10, 20, config)), phase_t2=str(H.rau_active(0, 20, config)))

        # 3. disarmed patch vs never patched, same UNet, at the native size (the cost is per call)
        native_config = H.make_config(unet, (native, native), "sd15")
        t_dis, t_clean = [], []
        forward = lambda: unet(x_native, t, context=ctx)  # noqa: E731
        forward()
        for rep in range(dis_repeats):
            for patched in ((True, False) if rep % 2 == 0 else (False, True)):
                if patched:
                    H.apply(unet, native_config, state)
                    state.disarm()
                    t_dis.append(_timed(forward))
                    H.remove(unet)
                else:
                    t_clean.append(_timed(forward))
        t_dis, t_clean = statistics.median(t_dis), statistics.median(t_clean)
        result.update(disarmed_overhead_ratio=t_dis / t_clean, forward_disarmed_s=t_dis, forward_clean_s=t_clean)
    result.update(_loaded_but_off(repeats=5 if quick else 9))
    return result


def _loaded_but_off(repeats: int) -> dict:
    """Generation with the script loaded and HiDiffusion off vs without the script, through the host double."""
    from support.generation import load_model, reset_host, txt2img
    from support.scripts_loader import load_script, unload_callbacks

    module = load_script("hidiffusion.py")
    script = module.HiDiffusionScript()
    args = module.SPEC.positional(module.SPEC.defaults())
    reset_host()
    load_model("sd15")
    settings = dict(steps=8, width=256, height=256)
    try:
        t_off, t_none = _interleaved(lambda: txt2img([script], args, arg_counts=[len(args)], **settings),
                                     lambda: txt2img(**settings), repeats=repeats)
    finally:
        unload_callbacks("hidiffusion.py")
    return {"disabled_overhead_ratio": t_off / t_none, "generation_off_s": t_off, "generation_without_s": t_none}
