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

from typing import Callable, NamedTuple, Optional, Sequence, Union

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


SecondCalls = Union[bool, None, Callable[[int], bool]]


class StepLocator:
    """Maps each model call to the sampler step it belongs to, from the schedule of the steps actually run and
    from what the sampler is (which of its steps make a second model call), never by counting calls or by
    learning the call pattern.

    ``schedule``: the decreasing sigmas (or timesteps) the sampler walks, ``len = steps run + 1`` (the last may be
    0). Step ``i`` makes its first call at ``schedule[i]`` (or above it: Euler/Heun/DPM2 with sigma churn evaluate
    at σ̂ = σ_i·(1 + γ)); a first call at ``value`` is the step with the largest schedule value ``<= value``.
    ``second_calls`` says which steps then make one more call, at a value in ``[schedule[i+1], schedule[i])``:
    Heun's correction exactly at ``schedule[i+1]``, the midpoints of DPM2 / DPM++ SDE / DPM++ 2S a (the ancestral
    ones land exactly on ``schedule[i+1]`` at eta 1), PLMS's first step. ``True``: every step whose next value is
    > 0 (the second-order k-diffusion samplers end with an Euler step to 0); a callable ``(i) -> bool`` for
    anything else; ``False``/``None``: no step. A call in that window right after step ``i``'s first call is step
    ``i``'s second call, whatever its value, so a midpoint equal to the next step's sigma is not mistaken for it.
    """

    def __init__(self, schedule: Sequence[float], second_calls: SecondCalls = None, rtol: float = 1e-4):
        self.schedule = [float(s) for s in schedule]
        if len(self.schedule) < 2:
            raise ValueError("StepLocator needs at least two schedule values")
        if second_calls is True:
            second_calls = self._next_is_positive
        self.second_calls = second_calls or (lambda i: False)
        self.rtol = rtol
        self._owed = None  # the step whose second call comes next

    @property
    def total_steps(self) -> int:
        return len(self.schedule) - 1

    def _next_is_positive(self, i: int) -> bool:
        return self.schedule[i + 1] > 0

    def _below(self, value: float, s: float) -> bool:
        """value < s, beyond the matching tolerance."""
        return value < s - self.rtol * abs(s) - 1e-8

    def locate(self, value: float) -> int:
        """The step index (0-based, clamped to the steps run) of a model call at sigma/timestep ``value``."""
        value = float(value)
        owed, self._owed = self._owed, None
        if owed is not None and self._below(value, self.schedule[owed]) \
                and not self._below(value, self.schedule[owed + 1]):
            return owed
        last = self.total_steps - 1
        step = next((j for j, s in enumerate(self.schedule) if not self._below(value, s)), last)
        step = min(step, last)
        if self.second_calls(step):
            self._owed = step
        return step
