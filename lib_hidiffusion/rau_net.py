"""RAU-Net: resolution-aware downsampler/upsampler and the avg-pool/bicubic pair, as wrapper bodies.

Each ``*_body(...)`` returns ``body(original, x, *args, **kwargs)`` for ``wrap.install``. While the state's
phase enables no RAU-Net stage, every body returns ``original(x, ...)`` untouched (the WebUI's own UNet).

The UNet's Downsamples and Upsamples are paired by level (``slot``: the k-th Downsample from the bottom with
the k-th Upsample from the top). While any stage is active:

- every Downsample records its input size in ``state.skip_hw[slot]``: the size of the skip connection its
  paired Upsample's output meets;
- every Upsample resizes (nearest) to that recorded size, then applies its own conv module, when that size is
  not exactly twice its input (else it runs unchanged). This is what the official code does on every up block
  (its ``num_upsamplers += 12`` makes diffusers pass ``upsample_size`` = the skip's size), where ldm would
  upsample 2x, convolve, and let the WebUI's ``torch.cat`` hijack resize afterwards (other conv borders).
  The resolution-aware upsampler (RAU) is the paired Upsample of RAD: it resizes to RAD's input size.
- RAD: runs the pretrained Downsample (its own forward, hence its conv module ``op``) with the conv's
  stride/padding/dilation temporarily set to 4/2/2 (official values), restored in ``finally``; conv forward
  patches of other extensions (the WebUI's LoRA patches ``nn.Conv2d.forward``) still apply. Output size is
  ``ceil(H / 4)``. A conv whose ``padding_mode`` is not 'zeros' (the WebUI's Tiling option sets 'circular' on
  every Conv2d) ignores a changed ``padding``: the input is then padded by 2 with that mode here and the conv
  runs with padding 0 (mode 'zeros' meanwhile), so RAD wraps like the rest of the UNet.
- pool: ``avg_pool2d(kernel 2, ceil_mode=True)`` on the output of an input block, recording its size;
  bicubic: resizes the output of the matching output block back to that size.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

RAD_STRIDE, RAD_PADDING, RAD_DILATION = (4, 4), (2, 2), (2, 2)


def _hw(x):
    return int(x.shape[-2]), int(x.shape[-1])


def record_body(slot: int, state):
    """A Downsample outside RAD: records its input size while a stage is active."""

    def body(original, x, *args, **kwargs):
        if state.rau_phase.any:
            state.skip_hw[slot] = _hw(x)
        return original(x, *args, **kwargs)

    return body


def rad_body(module: nn.Module, slot: int, state):
    op = getattr(module, "op", None)
    if not isinstance(op, nn.Conv2d):
        raise ValueError("HiDiffusion: the resolution-aware downsampler needs a Downsample with a conv `op`")

    def body(original, x, *args, **kwargs):
        phase = state.rau_phase
        if phase.any:
            state.skip_hw[slot] = _hw(x)
        if not phase.rad:
            return original(x, *args, **kwargs)
        saved = (op.stride, op.padding, op.dilation, op.padding_mode)
        mode = op.padding_mode
        if mode != "zeros":  # e.g. Tiling: pad with the conv's own mode, since it ignores a changed `padding`
            x = F.pad(x, (RAD_PADDING[1],) * 2 + (RAD_PADDING[0],) * 2, mode=mode)
            op.stride, op.padding, op.dilation, op.padding_mode = RAD_STRIDE, (0, 0), RAD_DILATION, "zeros"
        else:
            op.stride, op.padding, op.dilation = RAD_STRIDE, RAD_PADDING, RAD_DILATION
        try:
            return original(x, *args, **kwargs)
        finally:
            op.stride, op.padding, op.dilation, op.padding_mode = saved

    return body


def up_body(module: nn.Module, slot: int, state):
    """An Upsample: while a stage is active, resize to the paired Downsample's recorded input size, then conv."""

    def body(original, x, *args, **kwargs):
        hw = state.skip_hw.get(slot) if state.rau_phase.any else None
        if hw is None or hw == (2 * int(x.shape[-2]), 2 * int(x.shape[-1])):
            return original(x, *args, **kwargs)
        x = F.interpolate(x, size=hw, mode="nearest")
        if getattr(module, "use_conv", False):
            x = module.conv(x)
        return x

    return body


def pool_body(state):
    def body(original, *args, **kwargs):
        out = original(*args, **kwargs)
        if not state.rau_phase.pool:
            return out
        state.pool_input_hw = _hw(out)
        return F.avg_pool2d(out, kernel_size=(2, 2), ceil_mode=True)

    return body


def bicubic_body(state):
    def body(original, *args, **kwargs):
        out = original(*args, **kwargs)
        hw = state.pool_input_hw
        if not state.rau_phase.pool or hw is None:
            return out
        return F.interpolate(out, size=hw, mode="bicubic")

    return body
