"""Step gating: which RAU-Net stage is active at a sampling step, and locating the step of a model call.

The official code counts UNet calls per patched module and wraps at the pipeline's ``_num_timesteps``
(the number of steps the pipeline actually runs: all of them in txt2img, the tail in img2img). Expressed
in steps actually run (``step_index`` 0-based among them, ``total_steps`` = how many run):

- RAD/RAU and the pool pair are each active while ``step_index < int(total_steps * ratio)`` with the ratio
  of their role (T1 or T2, see ``presets.BlockMap``);
- SDXL aggressive: the T2-role stage (RAD/RAU) is active while ``step_index < int(8 / 50 * total_steps)``
  and the T1-role stage (pool pair) while ``int(8 / 50 * total_steps) <= step_index < int(total_steps * T1)``.

Here a "step" is a sampler step, never a UNet call: Heun/DPM2 make two calls per step and CFG without
batching makes several; all of them get the step's phase.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

from .presets import HiDiffusionConfig


class Phase(NamedTuple):
    """Which RAU-Net stages are active: ``rad`` = resolution-aware down/upsampler, ``pool`` = avg-pool/bicubic."""

    rad: bool
    pool: bool

    @property
    def any(self) -> bool:
        return self.rad or self.pool


INACTIVE = Phase(False, False)


def switch_step(total_steps: int, ratio: float) -> int:
    """The first step index where a stage with ``ratio`` is off: ``int(total_steps * ratio)`` (official)."""
    return int(total_steps * ratio)


def ratio_for_steps(steps: int, total_steps: int) -> float:
    """The T1/T2 ratio that switches after exactly ``steps`` of the ``total_steps`` steps run:
    ``switch_step(total_steps, ratio_for_steps(k, n)) == min(k, n)`` (times given as step counts)."""
    steps, total_steps = int(steps), int(total_steps)
    if steps < 0 or total_steps <= 0:
        raise ValueError(f"HiDiffusion: bad step count {steps} of {total_steps}")
    if steps >= total_steps:
        return 1.0
    return (steps + 0.5) / total_steps


def rau_active(step_index: int, total_steps: int, config: HiDiffusionConfig) -> Phase:
    """The RAU-Net phase at ``step_index`` (0-based among the ``total_steps`` steps actually run)."""
    if not config.rau_net or total_steps <= 0 or step_index is None or step_index < 0:
        return INACTIVE
    ratio = {"T1": config.t1, "T2": config.t2}
    rad_ratio, pool_ratio = ratio[config.blocks.rad_role], ratio[config.blocks.pool_role]
    if config.aggressive:
        start = int(config.aggressive_step_ratio * total_steps)
        # the official aggressive mode replaces the T2-role window by [0, start) and the T1-role one by
        # [start, int(N * T1))
        t2_active = step_index < start
        t1_active = start <= step_index < switch_step(total_steps, config.t1)
        rad = t1_active if config.blocks.rad_role == "T1" else t2_active
        pool = t1_active if config.blocks.pool_role == "T1" else t2_active
    else:
        rad = step_index < switch_step(total_steps, rad_ratio)
        pool = step_index < switch_step(total_steps, pool_ratio)
    if config.blocks.rad_input is None:
        rad = False
    return Phase(bool(rad), bool(pool))


class StepLocator:
    """Maps each model call to the sampler step it belongs to, from the schedule of the steps actually run.

    ``schedule``: the decreasing sigmas (or timesteps) the sampler walks, ``len = steps run + 1`` (the last
    may be 0). A call at ``value`` belongs to the step ``i`` with ``schedule[i] >= value > schedule[i+1]``;
    calls exactly at ``schedule[i+1]`` are ambiguous for samplers that evaluate at the next sigma (Heun's
    correction): with ``second_call_at_next=True`` the first call at a schedule value ``schedule[j]`` (j >= 1)
    is step ``j-1``'s correction and the following ones are step ``j``. ``None`` learns it: a schedule
    value seen twice in a row marks the sampler as Heun-like from then on.
    """

    def __init__(self, schedule: Sequence[float], second_call_at_next: Optional[bool] = None, rtol: float = 1e-4):
        self.schedule = [float(s) for s in schedule]
        if len(self.schedule) < 2:
            raise ValueError("StepLocator needs at least two schedule values")
        self.second_call_at_next = second_call_at_next
        self.rtol = rtol
        self._seen = {}
        self._last_value = None

    @property
    def total_steps(self) -> int:
        return len(self.schedule) - 1

    def _match(self, value: float) -> Optional[int]:
        for j, s in enumerate(self.schedule):
            if math.isclose(value, s, rel_tol=self.rtol, abs_tol=1e-8):
                return j
        return None

    def locate(self, value: float) -> int:
        """The step index (0-based, clamped to the steps run) of a model call at sigma/timestep ``value``."""
        value = float(value)
        j = self._match(value)
        repeat = self._last_value is not None and math.isclose(value, self._last_value, rel_tol=self.rtol)
        self._last_value = value
        last = self.total_steps - 1
        if j is None:
            # between schedule points (DPM2 midpoints, ...): the step whose interval holds the value
            idx = sum(1 for s in self.schedule[1:] if s >= value)
            return min(max(idx, 0), last)
        if self.second_call_at_next is None and repeat and j >= 1 and self._seen.get(j, 0) == 1:
            self.second_call_at_next = True
        count = self._seen.get(j, 0)
        self._seen[j] = count + 1
        if self.second_call_at_next and j >= 1 and count == 0:
            return min(j - 1, last)
        return min(j, last)
