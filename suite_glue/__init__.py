"""Shared WebUI glue for the suite's scripts: one parameter spec per feature (UI, API, infotext, X/Y/Z) and
the few host interactions every script needs. Imports the WebUI (`modules`, `gradio`) lazily, only where a
function needs it, so the specs are testable without a WebUI."""
