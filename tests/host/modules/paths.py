"""Host double of modules.paths: the WebUI's data and models folders (v1.10.1: `models_path` =
`<data dir>/models` unless `--models-dir`). Points at a temporary folder; tests that need model files set
their own folder flags (e.g. `shared.cmd_opts.iclight_dir`)."""
import os
import tempfile

data_path = os.path.join(tempfile.gettempdir(), "hdsuite-webui-double")
models_path = os.path.join(data_path, "models")
script_path = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
