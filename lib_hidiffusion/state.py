"""Per-generation mutable state read by the patched modules.

The patched modules are inert (call the original forward, bit-identical) unless the state is armed.
The host arms it before sampling, sets the current step from its denoiser callback, and disarms it when
the generation ends (also on errors; ``patcher.remove`` heals a UNet whose state was never disarmed).
"""
from __future__ import annotations

import logging
from typing import Callable, Dict, List, Optional, Tuple

import torch

from .presets import HiDiffusionConfig
from .schedule import INACTIVE, Phase, rau_active

logger = logging.getLogger("hidiffusion")


class HiDiffusionState:
    """Mutable per-generation state shared by the wrappers of one ``patcher.apply``.

    Fields read by the wrappers: ``armed``, ``phase`` (RAU-Net stages active now), ``msw_active``, the step
    and the seed (for the window shift). Scratch fields hold sizes recorded during one UNet forward.
    """

    def __init__(self):
        self.config: Optional[HiDiffusionConfig] = None
        self.armed = False
        self.seed = 0
        self.step: Optional[int] = None
        self.total_steps: Optional[int] = None
        self.phase: Phase = INACTIVE
        self.skip_hw: Dict[int, Tuple[int, int]] = {}          # Downsample slot -> its input (h, w)
        self.pool_input_hw: Optional[Tuple[int, int]] = None  # recorded before the avg-pool
        self.window_hw: Dict[int, Tuple[int, int]] = {}       # SpatialTransformer id -> (h, w) of its input
        self._shift_cache: Dict[Tuple[int, int], List[int]] = {}
        self._drawn: Dict[int, int] = {}  # official mode: block ordinal -> shift drawn in this denoiser call
        self._warned = set()
        self.on_warning: Optional[Callable[[str], None]] = None  # the host shows warnings to the user too

    # -- host side -------------------------------------------------------------------------------------
    def arm(self, seed: int = 0, config: Optional[HiDiffusionConfig] = None) -> None:
        """Start a sampling pass: the wrappers become active (RAU-Net waits for ``set_step``).
        ``config`` defaults to the one ``patcher.apply`` stored."""
        self.reset()
        if config is not None:
            self.config = config
        self.seed = int(seed)
        self.armed = True

    def set_step(self, step_index: int, total_steps: int) -> Phase:
        """The current sampler step (0-based among the ``total_steps`` steps actually run). Call once per denoiser
        call: every UNet call until the next ``set_step`` (the cond and uncond calls the WebUI makes when it does
        not batch them) shares its window shifts."""
        self._drawn.clear()
        self.step = int(step_index)
        self.total_steps = int(total_steps)
        self.phase = rau_active(self.step, self.total_steps, self.config) if self.config else INACTIVE
        return self.phase

    def disarm(self) -> None:
        """End of the pass/generation: every wrapper behaves exactly like the original module."""
        self.armed = False
        self.phase = INACTIVE

    def reset(self) -> None:
        self.armed = False
        self.step = None
        self.total_steps = None
        self.phase = INACTIVE
        self.skip_hw.clear()
        self.pool_input_hw = None
        self.window_hw.clear()
        self._shift_cache.clear()
        self._drawn.clear()

    # -- wrapper side ----------------------------------------------------------------------------------
    @property
    def rau_phase(self) -> Phase:
        return self.phase if self.armed else INACTIVE

    @property
    def msw_active(self) -> bool:
        return self.armed and self.config is not None and self.config.msw_msa

    def shift_index(self, block_ordinal: int, n_blocks: int) -> int:
        """Window shift index 0..3 for the windowed block ``block_ordinal`` (of ``n_blocks``) in the current
        denoiser call (the same for every UNet call until the next ``set_step``)."""
        cfg = self.config
        if cfg is None or cfg.shift_mode == "fixed":
            return cfg.fixed_shift if cfg is not None else 0
        if cfg.shift_mode == "official":
            # the official draw: torch.rand(1) on the global RNG per block call, mapped (0, .25] -> 0,
            # (.25, .5] -> 1, ...; its one batched cond+uncond call = our first UNet call of the denoiser call
            # (same draws in the same block order), which later calls (split uncond rows) reuse
            k = self._drawn.get(block_ordinal)
            if k is None:
                r = float(torch.rand(1))
                k = self._drawn[block_ordinal] = 0 if r <= 0.25 else 1 if r <= 0.5 else 2 if r <= 0.75 else 3
            return k
        step = self.step if self.step is not None else 0
        key = (self.seed, step)
        shifts = self._shift_cache.get(key)
        if shifts is None or len(shifts) < n_blocks:
            gen = torch.Generator(device="cpu").manual_seed(_mix(self.seed, step))
            shifts = torch.randint(0, 4, (max(n_blocks, 1),), generator=gen).tolist()
            self._shift_cache = {key: shifts}
        return shifts[block_ordinal]

    def warn_once(self, key: str, message: str) -> None:
        """Log `message` once per process, and pass it to `on_warning` (e.g. the generation's comment) every time."""
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message)
        if self.on_warning is not None:
            self.on_warning(message)


def _mix(seed: int, step: int) -> int:
    """A 63-bit seed from (seed, step) (splitmix64-style), stable across platforms."""
    x = (int(seed) * 0x9E3779B97F4A7C15 + int(step) * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & (2 ** 64 - 1)
    x ^= x >> 31
    x = (x * 0xBF58476D1CE4E5B9) & (2 ** 64 - 1)
    x ^= x >> 27
    return x & (2 ** 63 - 1)
