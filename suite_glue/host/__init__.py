"""The WebUI that runs the suite, behind one small interface (see `base.Host`).

`current()` detects the host family once (suite_glue.host.detect) and returns its `Host`; `forget()` drops that
answer (tests that switch the host double). Scripts call `current()` where they need the host, never at import.
"""
from __future__ import annotations

from typing import Optional

from .base import CFGPP, DEPTH, EDIT, HIDIFFUSION, ICLIGHT, Host, HostRefusal
from .detect import A1111, FORGE_BACKEND, FORGE_LDM_PATCHED, HostFamily, detect

_current: Optional[Host] = None


def current() -> Host:
    global _current
    if _current is None:
        family = detect()
        if family.kind == A1111:
            from .a1111 import A1111Host
            _current = A1111Host(family)
        else:
            from .forge import ForgeHost
            _current = ForgeHost(family)
    return _current


def forget() -> None:
    global _current
    _current = None


__all__ = ["current", "forget", "Host", "HostRefusal", "HostFamily", "detect", "CFGPP", "DEPTH", "EDIT", "HIDIFFUSION",
           "ICLIGHT", "A1111", "FORGE_LDM_PATCHED", "FORGE_BACKEND"]
