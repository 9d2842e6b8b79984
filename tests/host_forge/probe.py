"""What each UNet call of a HiDiffusion generation did, observed on layers (works on both doubles: on the Forge
double the blocks' own forward never runs, so block hooks would see nothing).

Per UNet call: `rad` (the resolution-aware Downsample's conv ran with stride 4), `pool` (the first layer of the
block after the pool block got a smaller map than the pool block's first layer), `windows` / `attn1` (how many of
the windowed attn1 modules ran on 4x the batch, of how many ran)."""
from __future__ import annotations


class LayerPhaseProbe:
    def __init__(self, unet, config):
        blocks = config.blocks
        self.calls, self._batch, self.handles = [], None, [unet.register_forward_pre_hook(self._start)]
        if blocks.rad_input is not None:
            self.handles.append(unet.input_blocks[blocks.rad_input][0].op.register_forward_pre_hook(self._rad))
        self.handles.append(unet.input_blocks[blocks.pool_input][0].register_forward_pre_hook(self._pool_in))
        self.handles.append(unet.input_blocks[blocks.pool_input + 1][0].register_forward_pre_hook(self._pool_out))
        for part, index, t in blocks.window_blocks:
            layer = next(m for m in getattr(unet, part)[index] if type(m).__name__ == "SpatialTransformer")
            self.handles.append(layer.transformer_blocks[t].attn1.to_q.register_forward_pre_hook(self._window))

    def _start(self, module, args):
        self._batch = int(args[0].shape[0])
        self.calls.append({"rad": False, "pool": False, "pool_hw": None, "windows": 0, "attn1": 0})

    def _rad(self, module, args):
        self.calls[-1]["rad"] = tuple(module.stride) == (4, 4)

    def _pool_in(self, module, args):
        self.calls[-1]["pool_hw"] = tuple(args[0].shape[-2:])

    def _pool_out(self, module, args):
        self.calls[-1]["pool"] = tuple(args[0].shape[-2:]) != self.calls[-1]["pool_hw"]

    def _window(self, module, args):
        self.calls[-1]["attn1"] += 1
        self.calls[-1]["windows"] += int(args[0].shape[0]) == 4 * self._batch

    def phases(self):
        return [(c["rad"], c["pool"], c["windows"]) for c in self.calls]

    def close(self):
        for handle in self.handles:
            handle.remove()
        self.handles = []
