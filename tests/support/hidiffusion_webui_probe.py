"""Helpers for the HiDiffusion WebUI tests: a cheap SD1.5-layout model and probes that observe, through the
host, what each UNet call did and which sampler step it belonged to.

- ``load_fast_sd15()``: a TinyLDM whose UNet has the SD 1.5 block structure (12 input blocks, Downsamples at
  3/6/9, attention at the top level where MSW-MSA works) but 32 channels everywhere, attention only at the
  top level and a 16-dim context: ~3x cheaper per call than the regular tiny SD1.5, same patch points.
- ``PhaseProbe(unet, ...)``: forward hooks (removed by ``close``) that record per UNet call whether the
  resolution-aware downsampler ran (its conv saw stride 4) and whether the avg-pool ran (the block after the
  pool input block received a smaller map), whether the windowed attn1 saw 4x the batch (windows), and
  optionally the step the adapter had located (``step_of()``). With ``window_attns`` it also counts, per call,
  how many of those attn1 modules ran on windows (``windows``) out of how many ran (``attn1``).
  ``PhaseProbe.for_config(unet, config)`` watches the patch points of a lib config (every windowed attn1 that
  exists in the UNet).
- ``StepTruth``: per UNet call, the sampler's own loop index (every sampler loop of the host double, see the
  class) and the number of sampler callbacks so far (the DDIM loop calls back once per step, after its model
  call); ground truth that does not come from sigma matching.
"""
from __future__ import annotations

from ldm.modules.diffusionmodules.openaimodel import UNetModel

from .generation import install_model
from .tiny_models import TinyLDM, randomize_

FAST_CONTEXT = 16


def load_fast_sd15(seed: int = 0):
    unet = UNetModel(image_size=32, in_channels=4, out_channels=4, model_channels=32, num_res_blocks=2,
                     attention_resolutions=[1], channel_mult=[1, 1, 1, 1], num_heads=1, transformer_depth=1,
                     context_dim=FAST_CONTEXT, use_spatial_transformer=True, legacy=False)
    model = TinyLDM(randomize_(unet, seed).eval(), "sd15")
    model.context_dim = FAST_CONTEXT
    return install_model(model)


class PhaseProbe:
    def __init__(self, unet, rad_input=3, pool_input=4, window_attn=None, step_of=None, window_attns=()):
        # dicts: rad, pool, windowed (None if no windowed block observed), windows / attn1 (counts over
        # window_attns), step (from step_of())
        self.calls = []
        self.step_of = step_of
        self.handles = [unet.register_forward_pre_hook(self._start)]
        if rad_input is not None:
            self.handles.append(unet.input_blocks[rad_input][0].op.register_forward_pre_hook(self._rad))
        self.handles.append(unet.input_blocks[pool_input].register_forward_pre_hook(self._pool_in))
        self.handles.append(unet.input_blocks[pool_input + 1].register_forward_pre_hook(self._pool_out))
        if window_attn is not None:
            self.handles.append(window_attn.to_q.register_forward_pre_hook(self._window))
        for attn in window_attns:
            self.handles.append(attn.to_q.register_forward_pre_hook(self._count_window))
        self._batch = None

    @classmethod
    def for_config(cls, unet, config, step_of=None):
        """A probe of ``config``'s RAD/pool points and of every windowed attn1 present in ``unet``."""
        blocks = config.blocks
        attns = []
        for part, index, t in blocks.window_blocks:
            layer = next(m for m in getattr(unet, part)[index] if type(m).__name__ == "SpatialTransformer")
            block = dict(layer.transformer_blocks.named_children()).get(str(t))
            if block is not None:
                attns.append(block.attn1)
        return cls(unet, rad_input=blocks.rad_input, pool_input=blocks.pool_input, step_of=step_of,
                   window_attns=attns)

    def _start(self, module, args):
        self._batch = int(args[0].shape[0])
        self.calls.append({"rad": False, "pool": False, "windowed": None, "pool_hw": None, "windows": 0, "attn1": 0,
                           "step": self.step_of() if self.step_of is not None else None})

    def _rad(self, module, args):
        self.calls[-1]["rad"] = tuple(module.stride) == (4, 4)

    def _pool_in(self, module, args):
        self.calls[-1]["pool_hw"] = tuple(args[0].shape[-2:])

    def _pool_out(self, module, args):
        self.calls[-1]["pool"] = tuple(args[0].shape[-2:]) != self.calls[-1]["pool_hw"]

    def _window(self, module, args):
        self.calls[-1]["windowed"] = int(args[0].shape[0]) == 4 * self._batch

    def _count_window(self, module, args):
        self.calls[-1]["attn1"] += 1
        self.calls[-1]["windows"] += int(args[0].shape[0]) == 4 * self._batch

    def phases(self):
        return [(c["rad"], c["pool"]) for c in self.calls]

    def close(self):
        for handle in self.handles:
            handle.remove()
        self.handles = []


class StepTruth:
    """Install with ``monkeypatch``; ``calls`` gets (loop index, callbacks so far) per UNet call of ``unet``.

    The loop index is the sampler's own step counter: every sampler loop of the host double is wrapped
    (k-diffusion's ``trange``, LCM's, Restart's ``tqdm.tqdm`` over its Heun steps, the timestep family's
    ``tqdm.trange``), plus any ``(module, name)`` in ``loops`` (e.g. the CFG++ script's ``trange``).
    ``loop_lengths`` gets each loop's length. With ``step_of``, ``located`` gets ``step_of()`` per UNet call."""

    def __init__(self, monkeypatch, unet, loops=(), step_of=None):
        import types

        import k_diffusion.sampling
        import tqdm
        from modules import sd_samplers_common, sd_samplers_extra, sd_samplers_lcm, sd_samplers_timesteps_impl

        self.loop_index = None
        self.loop_lengths = []
        self.callbacks = 0
        self.calls = []
        self.located = []
        truth = self

        def counted(real):
            def loop(*args, **kwargs):
                iterable = real(*args, **kwargs)
                truth.loop_lengths.append(len(iterable))
                for i, item in enumerate(iterable):
                    truth.loop_index = i
                    yield item
            return loop

        real_callback = sd_samplers_common.Sampler.callback_state

        def callback_state(sampler, d):
            truth.callbacks += 1
            return real_callback(sampler, d)

        monkeypatch.setattr(k_diffusion.sampling, "trange", counted(k_diffusion.sampling.trange))
        monkeypatch.setattr(sd_samplers_lcm, "trange", counted(sd_samplers_lcm.trange))
        monkeypatch.setattr(sd_samplers_extra, "tqdm", types.SimpleNamespace(tqdm=counted(tqdm.tqdm)))
        monkeypatch.setattr(sd_samplers_timesteps_impl, "tqdm",
                            types.SimpleNamespace(trange=counted(tqdm.trange), tqdm=tqdm.tqdm))
        for module, name in loops:
            monkeypatch.setattr(module, name, counted(getattr(module, name)))
        monkeypatch.setattr(sd_samplers_common.Sampler, "callback_state", callback_state)

        def record(module, args):
            self.calls.append((self.loop_index, self.callbacks))
            if step_of is not None:
                self.located.append(step_of())
        self.handle = unet.register_forward_pre_hook(record)

    def reset(self):
        self.loop_index = None
        self.loop_lengths = []
        self.callbacks = 0
        self.calls = []
        self.located = []

    def close(self):
        self.handle.remove()
