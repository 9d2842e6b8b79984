"""The part every always-on feature script shares: title, visibility, and controls + paste fields from its spec.

Use `class MyScript(spec_script(SPEC)):` in the script file. The WebUI registers every `Script` subclass bound
in a script module's namespace, so the base class is made here and never bound there by name."""
from __future__ import annotations

from .params import ParamSpec
from .ui import build_controls


def spec_script(spec: ParamSpec):
    from modules import scripts

    class SpecScript(scripts.Script):
        def title(self):
            return spec.title

        def show(self, is_img2img):
            return scripts.AlwaysVisible

        def ui(self, is_img2img):
            controls = build_controls(spec, self.elem_id)
            self.infotext_fields = spec.paste_fields(controls)
            self.paste_field_names = [key for _, key in self.infotext_fields if isinstance(key, str)]
            return controls

    return SpecScript
