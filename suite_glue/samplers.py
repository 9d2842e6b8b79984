"""Add samplers to the WebUI's sampler list the way it registers its own k-diffusion samplers (v1.10):
`SamplerData(label, constructor, aliases, options)` appended to `sd_samplers.all_samplers` and its map,
`set_samplers()` to rebuild the UI lists and the lower-case name/alias map, and the cached name lookup cleared.

Aliases are also entered as keys of `all_samplers_map` (pointing to the same entry), so the API, which looks
names up there, accepts them as it accepts labels; `/sdapi/v1/samplers` lists `all_samplers`, without duplicates.
Registering again (the WebUI re-runs scripts on "Reload UI") replaces our earlier entries."""
from __future__ import annotations

from typing import Callable, Iterable, Mapping, NamedTuple, Optional, Sequence


class SamplerEntry(NamedTuple):
    """One sampler to register. `base_label`: the WebUI sampler whose options are copied (registered earlier,
    possibly earlier in the same call); `options` are added to them (or are all the options without a base).
    `extra_params`: the settings-driven extra parameters; None copies k-diffusion's for `base_function`."""

    label: str
    function: Callable
    aliases: Sequence[str]
    base_label: Optional[str] = None
    base_function: Optional[str] = None
    options: Mapping = {}
    extra_params: Optional[Sequence[str]] = None


def register_kdiffusion_samplers(entries: Iterable[tuple]) -> list:
    """`entries`: `SamplerEntry`s or tuples (label, function, aliases, base_label, base_function). Options
    (scheduler, second_order, uses_ensd, ...) are copied from the WebUI sampler named `base_label`, and the
    settings-driven extra parameters (s_noise, s_churn, ...) from k-diffusion's `base_function`, so the WebUI
    passes them as to the base sampler when the function accepts them. Returns the `SamplerData` registered."""
    from modules import sd_samplers, sd_samplers_common, sd_samplers_kdiffusion

    registered = []
    for entry in entries:
        label, function, aliases, base_label, base_function, own_options, extra = SamplerEntry(*entry)
        if extra is None:
            extra = sd_samplers_kdiffusion.sampler_extra_params.get(base_function)
        if extra:
            sd_samplers_kdiffusion.sampler_extra_params[function] = list(extra)
        base = sd_samplers.all_samplers_map.get(base_label) if base_label else None
        options = {**(base.options if base is not None else {}), **own_options}
        data = sd_samplers_common.SamplerData(label, _constructor(sd_samplers_kdiffusion, function), list(aliases), options)
        _replace(sd_samplers.all_samplers, data)
        for key in [k for k, v in sd_samplers.all_samplers_map.items() if v.name == label]:
            del sd_samplers.all_samplers_map[key]
        sd_samplers.all_samplers_map[label] = data
        for alias in aliases:
            sd_samplers.all_samplers_map.setdefault(alias, data)
        registered.append(data)
    sd_samplers.set_samplers()
    sd_samplers.get_sampler_and_scheduler.cache_clear()
    return registered


def _constructor(kdiffusion_module, function: Callable):
    return lambda model: kdiffusion_module.KDiffusionSampler(function, model)


def _replace(samplers: list, data) -> None:
    for index, existing in enumerate(samplers):
        if existing.name == data.name:
            samplers[index] = data
            return
    samplers.append(data)
