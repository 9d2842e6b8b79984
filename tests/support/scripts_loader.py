"""Load the extension's scripts/*.py as the WebUI does (module named after the file, extension folder first on
sys.path while it runs), and undo what loading registered so tests stay independent."""
import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_script(filename: str):
    path = os.path.join(ROOT, "scripts", filename)
    spec = importlib.util.spec_from_file_location(filename, path)
    module = importlib.util.module_from_spec(spec)
    old = list(sys.path)
    sys.path.insert(0, ROOT)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = old
    return module


def unload_callbacks(filename: str):
    """Drop the callbacks the script file registered (as the WebUI does when it reloads scripts)."""
    from modules import script_callbacks
    path = os.path.join(ROOT, "scripts", filename)
    for callbacks in script_callbacks.callback_map.values():
        for c in [c for c in callbacks if os.path.abspath(c.script) == path]:
            callbacks.remove(c)


def loaded_hidiffusion():
    """Generator for a module-scoped fixture: the HiDiffusion script loaded as the WebUI loads it; afterwards its
    patches are released and its callbacks dropped."""
    module = load_script("hidiffusion.py")
    yield module
    module.CONTROLLER.release()
    unload_callbacks("hidiffusion.py")
