"""MSW-MSA: self-attention (attn1) on 2x2 windows with a cyclic shift, calling the original attention.

``window_partition(x, hw, shift_index)``: tokens ``[B, H*W, C]`` -> windows ``[4B, ceil(H/2)*ceil(W/2), C]``
(batch-major, windows in row order as the official code). Window size ``ws = (ceil(H/2), ceil(W/2))``,
shift ``(ws_h // 4 * k, ws_w // 4 * k)`` for ``k = shift_index`` in 0..3 (official). Tokens are rolled by
``-shift`` before the split and back by ``+shift`` after. Odd H or W: the official code bicubic-resizes the
feature map (and warns that quality drops); we replicate-pad one row/column, window, and crop it off again
(warned once), so every real token keeps its own value path.

``msw_body`` wraps an ``attn1`` module: it calls the ORIGINAL attention (whatever forward the host
installed: sdp, xformers, sub-quadratic) on the windowed tokens.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F


def window_partition(x: torch.Tensor, hw: Tuple[int, int], shift_index: int):
    """Returns (windows, meta) with windows ``[4B, wh*ww, C]``; ``meta`` is what ``window_reverse`` needs."""
    b, n, c = x.shape
    h, w = hw
    x = x.reshape(b, h, w, c)
    ph, pw = h % 2, w % 2
    if ph or pw:
        x = F.pad(x.permute(0, 3, 1, 2), (0, pw, 0, ph), mode="replicate").permute(0, 2, 3, 1)
    wh, ww = (h + ph) // 2, (w + pw) // 2
    shift = (wh // 4 * shift_index, ww // 4 * shift_index)
    if shift[0] or shift[1]:
        x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    windows = x.reshape(b, 2, wh, 2, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(b * 4, wh * ww, c)
    return windows, (b, h, w, ph, pw, wh, ww, shift)


def window_reverse(windows: torch.Tensor, meta) -> torch.Tensor:
    b, h, w, ph, pw, wh, ww, shift = meta
    c = windows.shape[-1]
    x = windows.reshape(b, 2, 2, wh, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(b, 2 * wh, 2 * ww, c)
    if shift[0] or shift[1]:
        x = torch.roll(x, shifts=(shift[0], shift[1]), dims=(1, 2))
    if ph or pw:
        x = x[:, :h, :w, :]
    return x.reshape(b, h * w, c)


def record_hw_body(key: int, state):
    """Wraps a SpatialTransformer: records the (h, w) of its input for its windowed attn1 modules."""

    def body(original, x, *args, **kwargs):
        if state.msw_active:
            state.window_hw[key] = (int(x.shape[-2]), int(x.shape[-1]))
        return original(x, *args, **kwargs)

    return body


def msw_body(key: int, ordinal: int, n_blocks: int, state):
    """Wraps an attn1 module of the SpatialTransformer ``key``; ``ordinal`` indexes the windowed blocks."""

    def body(original, x, *args, **kwargs):
        if not state.msw_active:
            return original(x, *args, **kwargs)
        context = kwargs.get("context", args[0] if args else None)
        hw = state.window_hw.get(key)
        if context is not None or x.ndim != 3 or hw is None or hw[0] * hw[1] != x.shape[1] or min(hw) < 2:
            state.warn_once("msw-skip", f"HiDiffusion: MSW-MSA skipped for a block (tokens {tuple(x.shape)}, "
                                        f"feature size {hw}); full self-attention used there")
            return original(x, *args, **kwargs)
        if hw[0] % 2 or hw[1] % 2:
            state.warn_once("msw-odd", f"HiDiffusion: feature size {hw} is odd; MSW-MSA pads one row/column "
                                       f"to split it into 2x2 windows (a latent side divisible by 8 avoids this)")
        k = state.shift_index(ordinal, n_blocks)
        windows, meta = window_partition(x, hw, k)
        out = original(windows, *args, **kwargs)
        return window_reverse(out, meta)

    return body
