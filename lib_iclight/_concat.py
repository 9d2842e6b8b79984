"""The suite's concat core (``lib_concat``), imported as this package's sibling.

Under the WebUI this package is ``hdsuite_private.lib_iclight`` (see ``hdsuite_imports``), so the sibling is
``hdsuite_private.lib_concat`` and never another extension's package of the same name; in tests and benchmarks
both are top-level packages."""
import importlib

_PARENT = __package__.rpartition(".")[0]


def concat_module(name: str = ""):
    """``lib_concat`` or its submodule ``name``, beside this package."""
    full = "lib_concat" + (f".{name}" if name else "")
    return importlib.import_module(f"{_PARENT}.{full}" if _PARENT else full)
