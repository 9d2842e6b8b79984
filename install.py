"""Run by the WebUI at start-up (never with --skip-install).

A stock WebUI v1.10 already ships everything the suite needs (torch, safetensors, numpy, opencv, PIL,
k-diffusion, gradio), so nothing is installed here. Background removal for IC-Light uses `rembg` when the user
has installed it; it is optional and deliberately not installed automatically (it brings onnxruntime)."""
import launch

REQUIRED = {}  # import name -> pip requirement; keep empty unless a stock WebUI lacks it

for module_name, requirement in REQUIRED.items():
    if not launch.is_installed(module_name):
        launch.run_pip(f"install {requirement}", f"{requirement} for sd-webui-hidiffusion-suite")
