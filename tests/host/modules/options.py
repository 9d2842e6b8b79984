"""Host double of modules.options.OptionInfo (the fields settings registration uses)."""


class OptionInfo:
    def __init__(self, default=None, label="", component=None, component_args=None, onchange=None, section=None,
                 refresh=None, comment_before="", comment_after="", infotext=None, restrict_api=False,
                 category_id=None):
        self.default = default
        self.label = label
        self.component = component
        self.component_args = component_args
        self.section = section
        self.infotext = infotext
        self.onchange = onchange

    def info(self, info):
        self.label += f" ({info})"
        return self

    def needs_reload_ui(self):
        return self
