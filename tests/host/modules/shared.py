"""Host double of modules.shared: `opts`, `state`, `cmd_opts`, `sd_model`, `device`."""
import types

from . import devices
from .paths import models_path  # noqa: F401  (v1.10.1 re-exports paths_internal.models_path)

device = devices.device

OPTION_DEFAULTS = {
    "batch_cond_uncond": True,
    "skip_early_cond": 0.0,
    "s_min_uncond_all": False,
    "pad_cond_uncond": False,
    "pad_cond_uncond_v0": False,
    "live_preview_content": "Prompt",
    "img2img_fix_steps": False,
    "img2img_extra_noise": 0.0,
    "always_discard_next_to_last_sigma": False,
    "use_old_karras_scheduler_sigmas": False,
    "sigma_min": 0.0,
    "sigma_max": 0.0,
    "rho": 0.0,
    "sgm_noise_multiplier": False,
    "eta_noise_seed_delta": 0,
    "eta_ancestral": 1.0,
    "eta_ddim": 0.0,
    "s_churn": 0.0,
    "s_tmin": 0.0,
    "s_tmax": 0.0,
    "s_noise": 1.0,
    "uni_pc_variant": "bh1",
    "uni_pc_skip_type": "time_uniform",
    "uni_pc_order": 3,
    "uni_pc_lower_order_final": True,
    "randn_source": "CPU",
    "hide_samplers": [],
    "no_dpmpp_sde_batch_determinism": False,
    "enable_quantization": False,
    "beta_dist_alpha": 0.6,
    "beta_dist_beta": 0.6,
    "inpainting_mask_weight": 1.0,
    "token_merging_ratio": 0.0,
    "token_merging_ratio_img2img": 0.0,
    "token_merging_ratio_hr": 0.0,
    "refiner_switch_by_sample_steps": False,  # v1.10.1 shared_options: refiner and FP8 settings
    "hires_fix_refiner_pass": "second pass",
    "fp8_storage": "Disable",
    "sd_model_checkpoint": None,  # the main checkpoint's title (sd_models.select_checkpoint)
    "cache_fp16_weight": False,
    "ESRGAN_tile": 192,  # v1.10.1 shared_options (read by Upscaler.__init__)
    "ESRGAN_tile_overlap": 8,
}


class Options:
    """Attribute access over `data`, falling back to registered defaults (as the WebUI's Options does)."""

    def __init__(self):
        object.__setattr__(self, "data", dict(OPTION_DEFAULTS))
        object.__setattr__(self, "data_labels", {})

    def __getattr__(self, item):
        data = object.__getattribute__(self, "data")
        if item in data:
            return data[item]
        labels = object.__getattribute__(self, "data_labels")
        if item in labels:
            return labels[item].default
        raise AttributeError(item)

    def __setattr__(self, key, value):
        self.data[key] = value

    def set(self, key, value, is_api=False, run_callbacks=True):
        """Options.set of v1.10.1: False if unchanged; KeyError for a setting nobody registered (ours: the
        registered labels and OPTION_DEFAULTS); runs the option's onchange when asked."""
        oldval = self.data.get(key, None)
        if oldval == value:
            return False
        info = self.data_labels[key] if key not in OPTION_DEFAULTS else self.data_labels.get(key)
        self.data[key] = value
        if run_callbacks and info is not None and getattr(info, "onchange", None) is not None:
            info.onchange()
        return True

    def add_option(self, key, info):
        self.data_labels[key] = info
        self.data.setdefault(key, info.default)

    def get_default(self, key):
        info = self.data_labels.get(key)
        return OPTION_DEFAULTS.get(key) if info is None else info.default

    def reset(self):
        self.data.clear()
        self.data.update(OPTION_DEFAULTS)
        for key, info in self.data_labels.items():
            self.data[key] = info.default


class State:
    def __init__(self):
        self.reset()

    def reset(self):
        self.interrupted = False
        self.skipped = False
        self.stopping_generation = False
        self.sampling_step = 0
        self.sampling_steps = 0
        self.job_count = 0
        self.job = ""

    def interrupt(self):
        self.interrupted = True

    def nextjob(self):
        pass


class _Tqdm:
    def update(self):
        pass


opts = Options()
state = State()
total_tqdm = _Tqdm()
cmd_opts = types.SimpleNamespace(no_half=False)  # the WebUI parses every flag; the double sets what is read
sd_model = None

latent_upscale_default_mode = "Latent"  # modules/shared.py of v1.10.1: hires fix's latent upscalers
latent_upscale_modes = {
    "Latent": {"mode": "bilinear", "antialias": False},
    "Latent (antialiased)": {"mode": "bilinear", "antialias": True},
    "Latent (bicubic)": {"mode": "bicubic", "antialias": False},
    "Latent (bicubic antialiased)": {"mode": "bicubic", "antialias": True},
    "Latent (nearest)": {"mode": "nearest", "antialias": False},
    "Latent (nearest-exact)": {"mode": "nearest-exact", "antialias": False},
}

from .options import OptionInfo  # noqa: E402,F401  (the WebUI re-exports it here)
from .upscaler import builtin_upscalers  # noqa: E402

sd_upscalers = builtin_upscalers()  # the WebUI fills it at start-up (modules/upscaler.py and model upscalers)
