"""Instance-level forward wrappers with exact, idempotent removal.

``install`` sets ``module.forward`` (an instance attribute, so the class forward and anything other
extensions installed at class level stay untouched and are still called) to a wrapper marked with
``MARK``. The wrapper calls ``body(original, *args, **kwargs)`` where ``original`` calls what was there
before: a previous instance ``forward`` if one existed, else ``type(module).forward`` looked up at call time.
``uninstall`` restores exactly the previous state of ``module.__dict__`` (no ``forward`` key if there was
none), unwrapping stacked wrappers of ours too.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

MARK = "_hidiffusion_wrapper"
_MISSING = object()


def install(module: nn.Module, body: Callable, tag: str) -> None:
    previous = module.__dict__.get("forward", _MISSING)

    if previous is _MISSING:
        def original(*args, **kwargs):
            return type(module).forward(module, *args, **kwargs)
    else:
        original = previous

    def forward(*args, **kwargs):
        return body(original, *args, **kwargs)

    setattr(forward, MARK, tag)
    forward._hidiffusion_previous = previous
    object.__setattr__(module, "forward", forward)


def is_wrapped(module: nn.Module) -> bool:
    return getattr(module.__dict__.get("forward"), MARK, None) is not None


def uninstall(module: nn.Module) -> bool:
    """Remove our wrappers from ``module`` (outermost first). True if something was removed. A wrapper of
    ours buried under another extension's instance wrapper cannot be removed; it stays inert."""
    removed = False
    current = module.__dict__.get("forward", _MISSING)
    while current is not _MISSING and getattr(current, MARK, None) is not None:
        previous = current._hidiffusion_previous
        if previous is _MISSING:
            del module.__dict__["forward"]
        else:
            object.__setattr__(module, "forward", previous)
        current = previous
        removed = True
    return removed
