"""Stop a generation with a clear message, before sampling, from inside a script hook.

The WebUI catches and only logs exceptions raised in script hooks (`process`, `process_before_every_sampling`,
...), so a bad input would otherwise be ignored and the image made without the feature. `fail_generation`
makes the next sampling call of this processing object raise the error instead; the WebUI shows it (UI) or
returns it (API), runs `p.close()`, and the next generation is unaffected (the override lives on this `p`)."""
from __future__ import annotations


def fail_generation(p, error: Exception) -> None:
    def raise_error(*args, **kwargs):
        raise error

    p.sample = raise_error
    sampler = getattr(p, "sampler", None)
    if sampler is not None:
        sampler.sample = raise_error
        sampler.sample_img2img = raise_error
