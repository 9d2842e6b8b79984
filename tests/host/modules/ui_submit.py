"""What the WebUI's UI sends when the user presses Generate (v1.10.1 `modules/txt2img.py` `txt2img` /
`modules/img2img.py` `img2img` receive `*args` = the current value of every `ScriptRunner.inputs` component and
set `p.script_args = args`).

gradio 3.41 keeps each component's `.value` postprocessed (`IOComponent.__init__`), the browser shows it and sends it
back, and `Blocks.process_api` hands the handler `component.preprocess(sent)`. So an untouched control arrives as
`preprocess(.value)`, and a control the user set arrives as `preprocess(postprocess(user_value))` (an uploaded
image as a PIL image in the component's mode, a Number with precision 0 as an int, ...)."""
from __future__ import annotations


def submitted_script_args(runner, changes=None) -> list:
    """`p.script_args` as the UI sends them: position 0 is the Script dropdown (type "index": 0 = None); `changes`
    is a list of (component from `runner.inputs`, value the user gave it)."""
    given = {id(component): value for component, value in (changes or [])}
    values = [0]
    for component in runner.inputs[1:]:
        sent = component.postprocess(given[id(component)]) if id(component) in given else component.value
        values.append(component.preprocess(sent))
    return values
