"""Host double of the WebUI's X/Y/Z plot script module (`scripts/xyz_grid.py`), as extensions see it.

Extensions find it in `modules.scripts.scripts_data` (the entry whose `script_class.__module__` is
"xyz_grid.py") and append `AxisOption`s to its `axis_options`. `run_axis` applies one axis value to a `p`
the way the plot does for a cell: choices/confirm first, then `apply(p, x, xs)`.
"""
import sys
import types

from modules import scripts, sd_samplers
from modules.shared import opts


class AxisOption:
    def __init__(self, label, type, apply, format_value=None, confirm=None, cost=0.0, choices=None, prepare=None):
        self.label = label
        self.type = type
        self.apply = apply
        self.format_value = format_value
        self.confirm = confirm
        self.cost = cost
        self.prepare = prepare
        self.choices = choices


class AxisOptionImg2Img(AxisOption):
    is_img2img = True


class AxisOptionTxt2Img(AxisOption):
    is_img2img = False


def apply_field(field):
    def fun(p, x, xs):
        setattr(p, field, x)
    return fun


def confirm_samplers(p, xs):
    for x in xs:
        if x.lower() not in sd_samplers.samplers_map:
            raise RuntimeError(f"Unknown sampler: {x}")


def format_value(p, opt, x):
    return x


def boolean_choice(reverse=False):
    return lambda: ["False", "True"] if reverse else ["True", "False"]


def install():
    """Create the module as the WebUI loads it (name "xyz_grid.py") and list it in scripts_data."""
    module = types.ModuleType("xyz_grid.py")
    for name in ("AxisOption", "AxisOptionImg2Img", "AxisOptionTxt2Img", "apply_field", "confirm_samplers",
                 "format_value", "boolean_choice"):
        setattr(module, name, globals()[name])
    module.axis_options = [
        AxisOptionTxt2Img("Sampler", str, apply_field("sampler_name"), format_value=format_value, confirm=confirm_samplers,
                          choices=lambda: [x.name for x in sd_samplers.samplers if x.name not in opts.hide_samplers]),
        AxisOptionTxt2Img("Hires sampler", str, apply_field("hr_sampler_name"), confirm=confirm_samplers,
                          choices=lambda: [x.name for x in sd_samplers.samplers_for_img2img]),
        AxisOptionImg2Img("Sampler", str, apply_field("sampler_name"), format_value=format_value, confirm=confirm_samplers,
                          choices=lambda: [x.name for x in sd_samplers.samplers_for_img2img]),
        AxisOption("Steps", int, apply_field("steps")),
    ]
    script_class = type("Script", (scripts.Script,), {"__module__": "xyz_grid.py", "title": lambda self: "X/Y/Z plot"})
    module.Script = script_class
    scripts.scripts_data[:] = [d for d in scripts.scripts_data if d.script_class.__module__ != "xyz_grid.py"]
    scripts.scripts_data.append(scripts.ScriptClassData(script_class, "scripts/xyz_grid.py", "", module))
    sys.modules.pop("xyz_grid.py", None)
    return module


def find_axis(module, label, is_img2img=False):
    for opt in module.axis_options:
        if opt.label == label and getattr(opt, "is_img2img", is_img2img) == is_img2img:
            return opt
    raise KeyError(label)


def run_axis(module, p, label, values, is_img2img=False):
    """Convert, confirm and apply `values[0]` of axis `label` to `p`, as the plot does for one cell."""
    opt = find_axis(module, label, is_img2img)
    xs = [opt.type(v) for v in values]
    if opt.choices is not None:
        allowed = opt.choices()
        for x in xs:
            if x not in allowed:
                raise RuntimeError(f"{label}: {x!r} is not one of {allowed}")
    if opt.confirm:
        opt.confirm(p, xs)
    opt.apply(p, xs[0], xs)
    return opt
