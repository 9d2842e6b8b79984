"""Command-line flags of the suite (read by the WebUI before it parses its own arguments)."""
import os


def preload(parser):
    parser.add_argument(
        "--iclight-dir", type=str, default=None,
        help="folder holding IC-Light model files (iclight_sd15_fc / fcon / fbc .safetensors); "
             f"default: models{os.sep}ic-light inside the WebUI's models folder",
    )
