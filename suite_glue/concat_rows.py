"""Keep concat conditioning in line with the latent that reaches the UNet.

WebUI v1.10.1 builds the image conditioning once per sampling pass and then hands the sampler a latent that can be
smaller than it:
- rows: the CFG denoiser drops the uncond rows of `x` when it skips them (Negative Guidance minimum sigma, skip
  early CFG) but passes `image_cond` with all its rows. The cond rows come first, so keeping the first rows of
  `c_concat` lines them up again.
- size: the hires pass with "Resize width/height to" another aspect ratio builds the conditioning at the upscaled
  size, then crops the latent (`sample_hr_pass`: `truncate_x // 2` columns on the left, the rest on the right; same
  for rows). The same centre crop of `c_concat` keeps every concat pixel over the latent pixel it was made for.
Instance-level wrapper of `apply_model`, put on while a concat model is armed and taken off with it."""
from __future__ import annotations

_MARK = "hdsuite_concat_trim"
_armed = []


def fit(concat, x):
    """`concat` [N, C, H, W] cut to x's rows (the first ones) and x's spatial size (the WebUI's centre crop)."""
    rows, (height, width) = x.shape[0], x.shape[-2:]
    if concat.shape[0] > rows:
        concat = concat[:rows]
    top, left = (concat.shape[-2] - height) // 2, (concat.shape[-1] - width) // 2
    if top > 0 or left > 0:
        top, left = max(top, 0), max(left, 0)
        concat = concat[..., top:top + height, left:left + width]
    return concat


def arm(model) -> None:
    if getattr(model.__dict__.get("apply_model"), _MARK, False):
        return
    bound = model.apply_model

    def apply_model(x_noisy, t, cond, *args, **kwargs):
        if isinstance(cond, dict) and cond.get("c_concat"):
            cond = {**cond, "c_concat": [fit(c, x_noisy) for c in cond["c_concat"]]}
        return bound(x_noisy, t, cond, *args, **kwargs)

    setattr(apply_model, _MARK, True)
    model.apply_model = apply_model
    _armed.append(model)


def disarm_all() -> None:
    while _armed:
        model = _armed.pop()
        if getattr(model.__dict__.get("apply_model"), _MARK, False):
            del model.__dict__["apply_model"]
