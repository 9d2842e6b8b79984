"""Run cleanup when a generation ends however it ends.

The WebUI calls `postprocess` only when a generation completes, but `p.close()` always (txt2img/img2img wrap
the run in `closing(p)`), also after errors and interrupts. `call_on_close` chains a function after this `p`'s
close, once per (p, key)."""
from __future__ import annotations

from typing import Callable


def call_on_close(p, key: str, fn: Callable[[], None]) -> None:
    marker = f"_hdsuite_on_close_{key}"
    if getattr(p, marker, False):
        return
    original = p.close

    def close(*args, **kwargs):
        try:
            return original(*args, **kwargs)
        finally:
            fn()

    p.close = close
    setattr(p, marker, True)
