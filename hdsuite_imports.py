"""Import this extension's own packages under a private name, whatever `sys.modules` already holds.

The WebUI loads every extension into one interpreter and puts each extension folder on `sys.path`, so a
plain `import lib_iclight` may return another extension's package of the same name (one exists). Scripts call
`suite_import("lib_iclight.merge")` instead: it registers a private parent package whose search path is only
this folder and imports the submodule under it (`hdsuite_private.lib_iclight.merge`). Our packages use
relative imports internally, so they work under either name.
"""
import importlib
import os
import sys
import types

PRIVATE_PACKAGE = "hdsuite_private"
EXTENSION_DIR = os.path.dirname(os.path.abspath(__file__))


def _private_parent():
    parent = sys.modules.get(PRIVATE_PACKAGE)
    if parent is None or list(getattr(parent, "__path__", [])) != [EXTENSION_DIR]:
        parent = types.ModuleType(PRIVATE_PACKAGE)
        parent.__path__ = [EXTENSION_DIR]
        parent.__file__ = None
        sys.modules[PRIVATE_PACKAGE] = parent
    return parent


def suite_import(name: str):
    """Return this extension's module `name` (e.g. "lib_hidiffusion" or "suite_glue.params")."""
    _private_parent()
    return importlib.import_module(f"{PRIVATE_PACKAGE}.{name}")
