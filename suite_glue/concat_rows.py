"""Keep concat conditioning in line with the latent that reaches the UNet (rows and size; why and how:
`lib_concat.rows.fit`). Instance-level wrapper of `apply_model`, put on while a concat model is armed and taken
off with it."""
from __future__ import annotations

import importlib

# the suite's concat core beside this package (hdsuite_private.lib_concat under the WebUI; top-level in tests)
_PARENT = __package__.rpartition(".")[0]
fit = importlib.import_module(f"{_PARENT}.lib_concat.rows" if _PARENT else "lib_concat.rows").fit

_MARK = "hdsuite_concat_trim"
_owners = {}  # id(model) -> (model, set of features that armed it)


def arm(model, owner: str) -> None:
    """Put the wrapper on `model` for feature `owner` (once per model, however many features need it)."""
    if not getattr(model.__dict__.get("apply_model"), _MARK, False):
        bound = model.apply_model

        def apply_model(x_noisy, t, cond, *args, **kwargs):
            if isinstance(cond, dict) and cond.get("c_concat"):
                cond = {**cond, "c_concat": [fit(c, x_noisy) for c in cond["c_concat"]]}
            return bound(x_noisy, t, cond, *args, **kwargs)

        setattr(apply_model, _MARK, True)
        model.apply_model = apply_model
    entry = _owners.get(id(model))
    if entry is None or entry[0] is not model:
        entry = _owners[id(model)] = (model, set())
    entry[1].add(owner)


def disarm(owner: str) -> None:
    """`owner` no longer needs the wrapper; a model nobody needs any more gets its own apply_model back. Idempotent."""
    for key, (model, owners) in list(_owners.items()):
        owners.discard(owner)
        if not owners:
            del _owners[key]
            if getattr(model.__dict__.get("apply_model"), _MARK, False):
                del model.__dict__["apply_model"]
