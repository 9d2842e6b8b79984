"""Bind a CFG++ sampler to a guidance convention and the host's noise / blend / progress hooks.

``make_sampler(definition, convention=..., randn_like=..., uncond_blend=..., progress=...)`` returns a
function with the k-diffusion signature of the core sampler (``inspect.signature`` sees ``sigmas``,
``eta``, ``s_noise``, ``noise_sampler`` through ``__wrapped__``, so the WebUI passes them as it does to
its own samplers). ``convention`` may be a string or a zero-argument callable read at *every* call
(e.g. ``lambda: shared.opts.cfgpp_convention``), so changing the setting needs no re-registration.
``randn_like`` is ``(x) -> noise`` for ancestral steps, also resolved per draw; ``brownian_noise`` is
``(x, σ_min, σ_max) -> noise_sampler`` for SDE samplers called without a noise sampler. Each hook is bound
only to functions that take it, so the same call binds a base sampler of ``registry.BASE_SAMPLERS``
(no convention, no uncond blend). Explicit keyword arguments given at call time win over the bound ones.
"""
from __future__ import annotations

import functools
import inspect
from typing import Callable, Optional, Union

from .brownian import BrownianFactory
from .guidance import UncondBlend, multiplier_for, normalize_convention
from .noise import RandnLike
from .registry import SAMPLERS, BaseSamplerDefinition, Definition, SamplerDefinition, find

Convention = Union[str, Callable[[], str], None]


def _definition(definition_or_name) -> Definition:
    if isinstance(definition_or_name, (SamplerDefinition, BaseSamplerDefinition)):
        return definition_or_name
    found = find(definition_or_name)
    if found is None:
        raise KeyError(f"unknown CFG++ sampler {definition_or_name!r}")
    return found


def make_sampler(definition_or_name, *, convention: Convention = None, randn_like: Optional[RandnLike] = None,
                 brownian_noise: Optional[BrownianFactory] = None, uncond_blend: Optional[UncondBlend] = None,
                 progress=None):
    definition = _definition(definition_or_name)
    fn = definition.function
    params = inspect.signature(fn).parameters
    if not callable(convention):
        normalize_convention(convention)  # fail at registration, not mid-generation
    hooks = [(name, hook) for name, hook in (("randn_like", randn_like), ("brownian_noise", brownian_noise),
                                             ("uncond_blend", uncond_blend), ("progress", progress))
             if hook is not None and name in params]

    @functools.wraps(fn)
    def sampler(*args, **kwargs):
        if "multiplier" in params:
            current = convention() if callable(convention) else convention
            kwargs.setdefault("multiplier", multiplier_for(current))
        for name, hook in hooks:
            kwargs.setdefault(name, hook)
        return fn(*args, **kwargs)

    sampler.cfgpp_definition = definition
    return sampler


def make_samplers(**hooks) -> dict:
    """``{label: bound sampler}`` for every registered CFG++ sampler, same hooks as ``make_sampler``."""
    return {d.label: make_sampler(d, **hooks) for d in SAMPLERS}
