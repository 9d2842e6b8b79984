"""Keep concat conditioning in line with the latent that reaches the UNet (rows and size; why and how:
`lib_concat.rows.fit`). Instance-level wrapper of `apply_model`, put on while a concat model is armed and taken
off with it."""
from __future__ import annotations

import importlib

# the suite's concat core beside this package (hdsuite_private.lib_concat under the WebUI; top-level in tests)
_PARENT = __package__.rpartition(".")[0]
fit = importlib.import_module(f"{_PARENT}.lib_concat.rows" if _PARENT else "lib_concat.rows").fit

_MARK = "hdsuite_concat_trim"
_armed = []


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
