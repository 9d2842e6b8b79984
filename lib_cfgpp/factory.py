"""Bind a CFG++ sampler to a guidance convention and the host's noise / blend / progress hooks.

``make_sampler(definition, convention=..., randn_like=..., uncond_blend=..., progress=...)`` returns a
function with the k-diffusion signature of the core sampler (``inspect.signature`` sees ``sigmas``,
``eta``, ``s_noise``, ``noise_sampler`` through ``__wrapped__``, so the WebUI passes them as it does to
its own samplers). ``convention`` may be a string or a zero-argument callable read at *every* call
(e.g. ``lambda: shared.opts.cfgpp_convention``), so changing the setting needs no re-registration.
``randn_like`` is ``(x) -> noise`` for ancestral steps, also resolved per draw. Explicit keyword
arguments given at call time win over the bound ones.
"""
from __future__ import annotations

import functools
import inspect
from typing import Callable, Optional, Union

from .guidance import UncondBlend, multiplier_for, normalize_convention
from .noise import RandnLike
from .registry import SAMPLERS, SamplerDefinition, find

Convention = Union[str, Callable[[], str], None]


def _definition(definition_or_name) -> SamplerDefinition:
    if isinstance(definition_or_name, SamplerDefinition):
        return definition_or_name
    found = find(definition_or_name)
    if found is None:
        raise KeyError(f"unknown CFG++ sampler {definition_or_name!r}")
    return found


def make_sampler(definition_or_name, *, convention: Convention = None, randn_like: Optional[RandnLike] = None,
                 uncond_blend: Optional[UncondBlend] = None, progress=None):
    definition = _definition(definition_or_name)
    fn = definition.function
    params = inspect.signature(fn).parameters
    if not callable(convention):
        normalize_convention(convention)  # fail at registration, not mid-generation

    @functools.wraps(fn)
    def sampler(*args, **kwargs):
        current = convention() if callable(convention) else convention
        kwargs.setdefault("multiplier", multiplier_for(current))
        if randn_like is not None and "randn_like" in params:
            kwargs.setdefault("randn_like", randn_like)
        if uncond_blend is not None:
            kwargs.setdefault("uncond_blend", uncond_blend)
        if progress is not None:
            kwargs.setdefault("progress", progress)
        return fn(*args, **kwargs)

    sampler.cfgpp_definition = definition
    return sampler


def make_samplers(**hooks) -> dict:
    """``{label: bound sampler}`` for every registered CFG++ sampler, same hooks as ``make_sampler``."""
    return {d.label: make_sampler(d, **hooks) for d in SAMPLERS}
