"""Command-line flags of the suite (read by the WebUI before it parses its own arguments)."""
import os


def preload(parser):
    parser.add_argument(
        "--iclight-dir", type=str, default=None,
        help="folder holding IC-Light model files (iclight_sd15_fc / fcon / fbc .safetensors); "
             f"default: models{os.sep}ic-light inside the WebUI's models folder",
    )
    parser.add_argument(  # the WebUI passes it to the SD x4 upscaler class (modelloader: <class>_models_path)
        "--sdx4-models-path", type=str, default=None,
        help="folder holding the SD x4 upscaler (x4-upscaler-ema.safetensors); "
             f"default: models{os.sep}sd-x4-upscaler inside the WebUI's models folder",
    )
