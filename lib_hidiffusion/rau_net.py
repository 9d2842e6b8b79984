"""RAU-Net: resolution-aware downsampler/upsampler and the avg-pool/bicubic pair, as wrapper bodies.

Each ``*_body(module, state)`` returns ``body(original, x, *args, **kwargs)`` for ``wrap.install``. While the
state's phase does not enable the stage, the body returns ``original(x, ...)`` untouched.

- RAD: runs the pretrained Downsample (its own forward, hence its conv module ``op``) with the conv's
  stride/padding/dilation temporarily set to 4/2/2 (official values), restored in ``finally``; conv forward
  patches of other extensions (the WebUI's LoRA patches ``nn.Conv2d.forward``) still apply. Output size is
  ``ceil(H / 4)``. Records the input size (the skip size the matching upsampler must restore).
- RAU: nearest-resizes to the recorded size, then the Upsample's own conv module (official: diffusers'
  ``Upsample2D`` with ``upsample_size``).
- pool: ``avg_pool2d(kernel 2, ceil_mode=True)`` on the output of an input block, recording its size;
  bicubic: resizes the output of the matching output block back to that size.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

RAD_STRIDE, RAD_PADDING, RAD_DILATION = (4, 4), (2, 2), (2, 2)


def rad_body(module: nn.Module, state):
    op = getattr(module, "op", None)
    if not isinstance(op, nn.Conv2d):
        raise ValueError("HiDiffusion: the resolution-aware downsampler needs a Downsample with a conv `op`")

    def body(original, x, *args, **kwargs):
        if not state.rau_phase.rad:
            return original(x, *args, **kwargs)
        state.rad_input_hw = (int(x.shape[-2]), int(x.shape[-1]))
        saved = (op.stride, op.padding, op.dilation)
        op.stride, op.padding, op.dilation = RAD_STRIDE, RAD_PADDING, RAD_DILATION
        try:
            return original(x, *args, **kwargs)
        finally:
            op.stride, op.padding, op.dilation = saved

    return body


def rau_body(module: nn.Module, state):
    def body(original, x, *args, **kwargs):
        hw = state.rad_input_hw
        if not state.rau_phase.rad or hw is None:
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
        state.pool_input_hw = (int(out.shape[-2]), int(out.shape[-1]))
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
