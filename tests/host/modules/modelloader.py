"""Host double of modules.modelloader: `load_upscalers` of v1.10.1 (run at start-up after the scripts load, and
again on "Reload UI").

Every loaded subclass of `modules.upscaler.Upscaler` is instantiated once (duplicates left by reloaded script
modules are dropped by `str(cls)`, the newest kept), with the command-line folder named after the class:
`--<classname lower-cased without "upscaler">-models-path` (cmd_opts attribute `<...>_models_path`), which is also
stored as `user_path`. `shared.sd_upscalers` becomes all their `scalers`, sorted by name with None, Lanczos and
Nearest first. (The real one also imports modules/*_model.py first; the double has none.)"""
from . import shared
from .upscaler import Upscaler, UpscalerLanczos, UpscalerNearest, UpscalerNone


def load_upscalers():
    data = []
    commandline_options = vars(shared.cmd_opts)
    used_classes = {}
    for cls in reversed(Upscaler.__subclasses__()):
        classname = str(cls)
        if classname not in used_classes:
            used_classes[classname] = cls
    for cls in reversed(used_classes.values()):
        name = cls.__name__
        cmd_name = f"{name.lower().replace('upscaler', '')}_models_path"
        commandline_model_path = commandline_options.get(cmd_name, None)
        scaler = cls(commandline_model_path)
        scaler.user_path = commandline_model_path
        scaler.model_download_path = commandline_model_path or scaler.model_path
        data += scaler.scalers
    builtin = (UpscalerNone, UpscalerLanczos, UpscalerNearest)
    shared.sd_upscalers = sorted(data, key=lambda x: x.name.lower() if not isinstance(x.scaler, builtin) else "")
