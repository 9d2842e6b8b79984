"""The suite's pure-PyTorch cores beside this package: `hdsuite_private.<name>` under the WebUI (see
hdsuite_imports), top-level `<name>` in tests that import suite_glue directly."""
from __future__ import annotations

import importlib

_ROOT = __package__.rpartition(".")[0].rpartition(".")[0]


def lib(name: str):
    return importlib.import_module(f"{_ROOT}.{name}" if _ROOT else name)
