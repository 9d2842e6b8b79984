"""Keep concat conditioning in line with the latent rows when the WebUI skips the uncond pass.

WebUI v1.10.1's CFG denoiser drops the uncond rows of `x` when it skips them (Negative Guidance minimum sigma,
skip early CFG) but passes `image_cond` with all its rows, so a concat-conditioned model fails to concatenate.
The cond rows come first, so keeping the first rows of `c_concat` lines them up again. Instance-level wrapper of
`apply_model`, put on while a concat model is armed and taken off with it."""
from __future__ import annotations

_MARK = "hdsuite_concat_trim"
_armed = []


def arm(model) -> None:
    if getattr(model.__dict__.get("apply_model"), _MARK, False):
        return
    bound = model.apply_model

    def apply_model(x_noisy, t, cond, *args, **kwargs):
        if isinstance(cond, dict) and cond.get("c_concat"):
            rows = x_noisy.shape[0]
            cond = {**cond, "c_concat": [c[:rows] if c.shape[0] > rows else c for c in cond["c_concat"]]}
        return bound(x_noisy, t, cond, *args, **kwargs)

    setattr(apply_model, _MARK, True)
    model.apply_model = apply_model
    _armed.append(model)


def disarm_all() -> None:
    while _armed:
        model = _armed.pop()
        if getattr(model.__dict__.get("apply_model"), _MARK, False):
            del model.__dict__["apply_model"]
