"""Host double of the WebUI's X/Y/Z plot script module (`scripts/xyz_grid.py` of v1.10.1), as extensions see it.

Extensions find it in `modules.scripts.scripts_data` (the entry whose `script_class.__module__` is
"xyz_grid.py") and append `AxisOption`s to its `axis_options`; in the real load order the plot loads after our
scripts (metadata.ini `Before`), so axes are added from `on_before_ui`.

`run_grid` follows `Script.run` / `draw_xyz_grid` of v1.10.1 for what reaches the scripts:
- values are converted with the axis `type` and passed to `confirm` (process_axis) before any cell runs;
  they are never checked against `choices` (choices only fill the UI dropdown);
- every cell runs `process_images` on a shallow `copy(p)` (shared `extra_generation_params`,
  `override_settings`, `script_args` and `scripts`), after `apply(pc, value, values)` of the x, y and z axes;
  an exception in `apply` stops the whole plot, one in `process_images` makes a blank cell
  (`errors.display`) and the plot goes on; after an interrupt the remaining cells are blank;
- the copies are never closed: only the outer `p` is, by the `closing(p)` of txt2img/img2img around the run;
- loop order: z, then y, then x innermost, unless one axis has a strictly higher `cost` (then it is outermost).
Not reproduced: range syntax ("1-5 (+2)"), the grid image, fixed/varied seeds, the `Processed` merging.
"""
import contextlib
import copy
import dataclasses
import sys
import types
from typing import Any, Optional

from modules import processing, scripts, sd_samplers
from modules.shared import opts, state


class AxisOption:
    def __init__(self, label, type, apply, format_value=None, confirm=None, cost=0.0, choices=None, prepare=None):
        self.label = label
        self.type = type
        self.apply = apply
        self.format_value = format_value or format_value_add_label
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


def apply_override(field, boolean=False):
    """Stores the value in `p.override_settings` (the dict all copies of `p` share), as v1.10.1 apply_override."""
    def fun(p, x, xs):
        if boolean:
            x = x.lower() == "true"
        p.override_settings[field] = x
    return fun


def do_nothing(p, x, xs):
    pass


def confirm_samplers(p, xs):
    for x in xs:
        if x.lower() not in sd_samplers.samplers_map:
            raise RuntimeError(f"Unknown sampler: {x}")


def format_value_add_label(p, opt, x):
    return f"{opt.label}: {round(x, 8) if type(x) == float else x}"


def format_value(p, opt, x):
    return round(x, 8) if type(x) == float else x


def format_nothing(p, opt, x):
    return ""


def boolean_choice(reverse=False):
    return lambda: ["False", "True"] if reverse else ["True", "False"]


def _axis_options():
    return [
        AxisOption("Nothing", str, do_nothing, format_value=format_nothing),
        AxisOption("Seed", int, apply_field("seed")),
        AxisOption("Steps", int, apply_field("steps")),
        AxisOption("CFG Scale", float, apply_field("cfg_scale")),
        AxisOptionTxt2Img("Sampler", str, apply_field("sampler_name"), format_value=format_value, confirm=confirm_samplers,
                          choices=lambda: [x.name for x in sd_samplers.samplers if x.name not in opts.hide_samplers]),
        AxisOptionTxt2Img("Hires sampler", str, apply_field("hr_sampler_name"), confirm=confirm_samplers,
                          choices=lambda: [x.name for x in sd_samplers.samplers_for_img2img if x.name not in opts.hide_samplers]),
        AxisOptionImg2Img("Sampler", str, apply_field("sampler_name"), format_value=format_value, confirm=confirm_samplers,
                          choices=lambda: [x.name for x in sd_samplers.samplers_for_img2img if x.name not in opts.hide_samplers]),
        AxisOption("Denoising", float, apply_field("denoising_strength")),
        AxisOptionImg2Img("Image CFG Scale", float, apply_field("image_cfg_scale")),  # v1.10.1 xyz_grid.py
        AxisOption("Extra noise", float, apply_override("img2img_extra_noise")),
        AxisOption("Token merging ratio", float, apply_override("token_merging_ratio")),
        AxisOption("SGM noise multiplier", str, apply_override("sgm_noise_multiplier", boolean=True),
                   choices=boolean_choice(reverse=True)),
    ]


def install():
    """Create the module as the WebUI loads it (name "xyz_grid.py") and list it in scripts_data."""
    module = types.ModuleType("xyz_grid.py")
    for name in ("AxisOption", "AxisOptionImg2Img", "AxisOptionTxt2Img", "apply_field", "apply_override",
                 "confirm_samplers", "format_value", "format_value_add_label", "boolean_choice", "do_nothing"):
        setattr(module, name, globals()[name])
    module.axis_options = _axis_options()
    script_class = type("Script", (scripts.Script,), {"__module__": "xyz_grid.py", "title": lambda self: "X/Y/Z plot"})
    module.Script = script_class
    scripts.scripts_data[:] = [d for d in scripts.scripts_data if d.script_class.__module__ != "xyz_grid.py"]
    scripts.scripts_data.append(scripts.ScriptClassData(script_class, "scripts/xyz_grid.py", "", module))
    sys.modules.pop("xyz_grid.py", None)
    return module


def find_axis(module, label, is_img2img=False):
    """The axis the plot's UI lists under `label` (its `current_axis_options`: shared and same-tab axes)."""
    for opt in module.axis_options:
        if opt.label == label and getattr(opt, "is_img2img", is_img2img) == is_img2img:
            return opt
    raise KeyError(label)


def process_axis(p, opt, values):
    """Script.run's process_axis: convert each value with the axis type, then `confirm` (no choices check)."""
    if opt.label == "Nothing":
        return [0]
    xs = [opt.type(v) for v in values if not (isinstance(v, str) and v.strip() == "")]
    if opt.confirm:
        opt.confirm(p, xs)
    return xs


def run_axis(module, p, label, values, is_img2img=False):
    """Convert and confirm `values` of axis `label` and apply `values[0]` to `p`, as the plot does for a cell."""
    opt = find_axis(module, label, is_img2img)
    xs = process_axis(p, opt, values)
    opt.apply(p, xs[0], xs)
    return opt


@dataclasses.dataclass
class Cell:
    x: Any
    y: Any
    z: Any
    p: Any  # the copy this cell ran on (None when the cell was skipped after an interrupt)
    processed: Optional[Any]  # the Processed, None for a blank cell
    error: Optional[BaseException] = None


def _loop_order(opts_by_axis):
    """(outer, middle, inner) axis names as draw_xyz_grid orders them by `cost`."""
    first, second = "z", "y"
    for axis in "xyz":
        others = [a for a in "xyz" if a != axis]
        if all(opts_by_axis[axis].cost > opts_by_axis[o].cost for o in others):
            first = axis
            second = others[0] if opts_by_axis[others[0]].cost > opts_by_axis[others[1]].cost else others[1]
    inner = next(a for a in "xyz" if a not in (first, second))
    return first, second, inner


def run_grid(module, p, x=None, y=None, z=None, is_img2img=False):
    """Run the plot on `p` (its `scripts`/`script_args` set) inside `closing(p)`; `x`, `y`, `z` are
    (label, [values]) or None for "Nothing". Returns the cells in the order they ran."""
    axes = {"x": x, "y": y, "z": z}
    chosen = {name: find_axis(module, a[0] if a else "Nothing", is_img2img) for name, a in axes.items()}
    values = {name: process_axis(p, chosen[name], a[1] if a else []) for name, a in axes.items()}
    first, second, inner = _loop_order(chosen)
    cells = []

    def cell(pos):
        if state.interrupted or state.stopping_generation:
            cells.append(Cell(pos["x"], pos["y"], pos["z"], None, None))
            return
        pc = copy.copy(p)
        for name in "xyz":
            chosen[name].apply(pc, pos[name], values[name])
        try:
            cells.append(Cell(pos["x"], pos["y"], pos["z"], pc, processing.process_images(pc)))
        except Exception as exc:  # errors.display(e, "generating image for xyz plot"): a blank cell
            cells.append(Cell(pos["x"], pos["y"], pos["z"], pc, None, exc))

    with contextlib.closing(p):
        for a in values[first]:
            for b in values[second]:
                for c in values[inner]:
                    cell({first: a, second: b, inner: c})
    return cells
