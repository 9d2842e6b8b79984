"""HiDiffusion (RAU-Net + MSW-MSA) in txt2img and img2img: accordion, API, X/Y/Z, infotext.

Adapter only: presets, the schedule rule, the step locator and the UNet wrappers live in lib_hidiffusion.

Parameters (API order = field order; the dict form `{"args": [{"enabled": true, "model": "SDXL 1.0"}]}` too):
- model: "Auto" reads SD1/SD2 vs SDXL from the UNet structure; SDXL-Turbo has the SDXL structure, so choose
  "SDXL-Turbo" for it (a choice that contradicts the structure is refused).
- timing + t1/t2: "Auto" = the official preset of the family and size (t1/t2 ignored, not written to the
  infotext); "Fraction of steps" = t1/t2 in [0, 1] of the steps actually run (official semantics: a stage is
  on while step < int(N * T)); "Steps" = t1/t2 are step counts among the steps actually run (img2img and the
  hires pass count only the steps they run), clamped to N. T2 = 0 is a real value (stage off), never "auto".
- aggressive: "Auto" (official: SDXL base below 4096 px, not for inpainting models) / "On" (SDXL base only) / "Off".
- hires_rau_net: RAU-Net also in the hires-fix pass (off by default: the first pass already fixed the layout);
  MSW-MSA always runs in the hires pass when on.
- shift: "Seeded" = the window shift is derived from (seed, step): the same seed reproduces exactly;
  "Official random" = drawn from torch's global RNG for every windowed block, once per denoiser step (the official
  code draws per block call on one batched cond+uncond call; split cond/uncond calls share the step's draws).
  Seed = `p.seeds[0]` of the current batch: the whole batch shares one UNet call, hence one shift per step;
  an image of a batch therefore equals a lone generation with its seed only when it is the batch's first image.

Hooks:
- process: heal (remove stale patches of an earlier generation: postprocess is skipped after errors and
  interrupts), parse and validate everything (family vs UNet, times, aggressive, HyperTile/ToMe vs MSW-MSA for
  both passes); any problem stops the generation before sampling (fail_generation). Writes the infotext.
- process_before_every_sampling (once per pass): remove, then apply the pass's config, arm with the seed,
  register the cfg_denoiser callback (only while armed), and make `p.close()` release everything.
- cfg_denoiser callback: on the first call of a pass, build the StepLocator from the schedule the sampler runs
  (k-diffusion sigmas or DDIM-family timesteps, img2img/hires tail only) and which of its steps call the model
  twice (suite_glue.steps); then per call the step from sigma. No fixed schedule (DPM fast/adaptive, UniPC, Restart
  from 20 steps): RAU-Net off for the pass, with a warning.
- postprocess / p.close / script unload: disarm, remove every wrapper, unregister the callback.
"""
import dataclasses
import logging

from modules import script_callbacks, shared

from hdsuite_imports import suite_import

hidiffusion = suite_import("lib_hidiffusion")
glue_params = suite_import("suite_glue.params")
glue_script_base = suite_import("suite_glue.script_base")
glue_xyz = suite_import("suite_glue.xyz")
glue_fields_route = suite_import("suite_glue.fields_route")
glue_infotext = suite_import("suite_glue.infotext")
glue_failure = suite_import("suite_glue.failure")
glue_lifecycle = suite_import("suite_glue.lifecycle")
glue_neighbours = suite_import("suite_glue.neighbours")
glue_host = suite_import("suite_glue.host")  # the WebUI family: patch routes and refusals
param = glue_params.param

log = logging.getLogger("hidiffusion")

TITLE = "HiDiffusion"
RUN_ATTR = "hidiffusion_values"
FAMILIES = {"Auto": None, "SD 1.5": "sd15", "SD 2.1": "sd21", "SDXL 1.0": "sdxl", "SDXL-Turbo": "sdxl_turbo"}
TIMINGS = ("Auto", "Fraction of steps", "Steps")
AGGRESSIVE = {"Auto": None, "On": True, "Off": False}
SHIFTS = {"Seeded": "seeded", "Official random": "official"}


@dataclasses.dataclass(frozen=True)
class HiDiffusionArgs:
    enabled: bool = param(False, "Enable")
    model: str = param("Auto", "Model family", choices=tuple(FAMILIES), infotext="model", xyz=True,
                       info="Auto tells SD1/SD2 from SDXL; choose SDXL-Turbo for Turbo checkpoints")
    rau_net: bool = param(True, "RAU-Net", infotext="RAU-Net", xyz=True,
                          info="resolution-aware down/upsampling in the early steps (no duplicated objects)")
    msw_msa: bool = param(True, "MSW-MSA", infotext="MSW-MSA", xyz=True,
                          info="shifted-window self-attention in the top blocks (faster at high resolution)")
    timing: str = param("Auto", "T1/T2 given as", choices=TIMINGS, infotext="timing", xyz=True, ui="radio",
                        info="Auto: official preset by model and size; else the values below")
    t1: float = param(0.4, "T1", minimum=0.0, maximum=1000.0, infotext="T1", xyz=True, ui="number")
    t2: float = param(0.0, "T2", minimum=0.0, maximum=1000.0, infotext="T2", xyz=True, ui="number")
    aggressive: str = param("Auto", "Aggressive schedule (SDXL)", choices=tuple(AGGRESSIVE), infotext="aggressive",
                            xyz=True, ui="radio")
    hires_rau_net: bool = param(False, "RAU-Net in hires pass", infotext="hires RAU-Net", xyz=True)
    shift: str = param("Seeded", "Window shift", choices=tuple(SHIFTS), infotext="shift", xyz=True, ui="radio",
                       info="Seeded: reproducible from the seed; Official random: global RNG as the official code")


SPEC = glue_params.ParamSpec(HiDiffusionArgs, title=TITLE, infotext_prefix=TITLE)


# --- what each pass runs -------------------------------------------------------------------------------------
def _unet(p):
    """The UNet sampling now. v1.10.1's `p.sd_model` is a property returning `shared.sd_model` (so it follows the
    refiner and hires checkpoint reloads); `p.sd_model` is only a fallback."""
    model = shared.sd_model or getattr(p, "sd_model", None)
    return getattr(getattr(model, "model", None), "diffusion_model", None)


def _where(name):
    return f"'{name}' ({SPEC.by_name[name].label})"


def check_times(values):
    """t1/t2 fit the chosen unit (ValueError naming the field otherwise)."""
    for name in ("t1", "t2"):
        value = getattr(values, name)
        if values.timing == "Fraction of steps" and not 0.0 <= value <= 1.0:
            raise ValueError(f"{TITLE}: {_where(name)} must be a fraction of the steps in [0, 1] when "
                             f"'timing' is 'Fraction of steps', got {value} (choose 'Steps' to give step counts)")
        if values.timing == "Steps" and value != int(value):
            raise ValueError(f"{TITLE}: {_where(name)} must be a whole number of steps when 'timing' is "
                             f"'Steps', got {value}")


def pass_config(values, unet, latent_hw, hires: bool):
    """The lib config of one sampling pass, or None when nothing runs in it. With 'Steps' timing the times are
    placeholders until the number of steps run is known (`times_for`)."""
    rau_net = values.rau_net and (values.hires_rau_net or not hires)
    if not (rau_net or values.msw_msa):
        return None
    times = {} if values.timing == "Auto" else (
        dict(t1=values.t1, t2=values.t2) if values.timing == "Fraction of steps" else dict(t1=0.0, t2=0.0))
    return hidiffusion.make_config(unet, latent_hw, FAMILIES[values.model], rau_net=rau_net, msw_msa=values.msw_msa,
                                   aggressive=AGGRESSIVE[values.aggressive], shift_mode=SHIFTS[values.shift], **times)


def times_for(values, config, total_steps: int):
    """`config` with 'Steps' times turned into ratios of the `total_steps` steps this pass runs."""
    if values.timing != "Steps":
        return config
    return dataclasses.replace(config, t1=hidiffusion.ratio_for_steps(values.t1, total_steps),
                               t2=hidiffusion.ratio_for_steps(values.t2, total_steps))


def conflict(p, values, hires: bool):
    """Why MSW-MSA cannot run in this pass (HyperTile or ToMe re-partition the same self-attention), or None."""
    if not values.msw_msa:
        return None
    if glue_neighbours.hypertile_unet_on(hires):
        where = "'Enable Hypertile U-Net'" + (" / 'Enable Hypertile U-Net for hires fix second pass'" if hires else "")
        return (f"{TITLE}: MSW-MSA cannot run together with HyperTile U-Net (both split the same self-attention "
                f"layers). Turn off {where} in Settings > Hypertile, or turn off MSW-MSA in {TITLE}.")
    ratio = glue_neighbours.token_merging_ratio(p, hires)
    if ratio:
        setting = "Token merging ratio for high-res pass" if hires else "Token merging ratio"
        return (f"{TITLE}: MSW-MSA cannot run together with token merging (ToMe ratio {ratio}: it changes the "
                f"token count of the same self-attention). Set '{setting}' (Settings > Optimizations) to 0, "
                f"or turn off MSW-MSA in {TITLE}.")
    return None


def latent_size(p, kwargs, hires: bool):
    x = kwargs.get("x")
    if x is not None and getattr(x, "ndim", 0) == 4:
        return int(x.shape[-2]), int(x.shape[-1])
    if hires:
        return p.hr_upscale_to_y // 8, p.hr_upscale_to_x // 8
    return p.height // 8, p.width // 8


# --- the one armed generation --------------------------------------------------------------------------------
class Controller:
    """Holds the patched UNet, the per-generation state and the step locator of the armed pass."""

    def __init__(self):
        self.state = hidiffusion.HiDiffusionState()
        self.unet = None
        self.p = None
        self.values = None
        self.base_config = None
        self.pass_kind = None  # (img2img-style?, steps argument of the sampler call)
        self.denoiser = None
        self.locator = None

    def release(self, p=None):
        """Disarm, remove every wrapper (of the armed UNet and of `p`'s), unregister the callback. Idempotent."""
        self.state.disarm()
        self.state.on_warning = None
        script_callbacks.remove_callbacks_for_function(on_cfg_denoiser)
        for unet in (self.unet, _unet(p) if p is not None else None):
            if unet is not None:
                glue_host.current().remove_unet_patches(unet)
        self.unet = self.p = self.values = self.base_config = self.pass_kind = self.denoiser = self.locator = None

    def arm(self, p, unet, values, config, pass_kind):
        glue_host.current().apply_unet_patches(p, unet, config, self.state)
        self.unet, self.p, self.values, self.base_config, self.pass_kind = unet, p, values, config, pass_kind
        self.state.arm(seed=int(p.seeds[0]) if getattr(p, "seeds", None) else int(getattr(p, "seed", 0)))
        self.state.on_warning = lambda text: glue_infotext.add_comment(p, text)  # the user sees warnings too
        script_callbacks.remove_callbacks_for_function(on_cfg_denoiser)
        script_callbacks.on_cfg_denoiser(on_cfg_denoiser, name="HiDiffusion step")
        # postprocess is skipped after errors and interrupts; p.close() is not
        glue_lifecycle.call_on_close(p, "hidiffusion", lambda: self.release() if self.p is p else None)

    def on_denoiser(self, params):
        denoiser = getattr(params, "denoiser", None)
        if not self.state.armed or denoiser is None:
            return
        owner = getattr(denoiser, "p", None)
        if owner is not None and owner is not self.p:
            # another generation samples while a failed one left us armed (neither postprocess nor close ran):
            # release before its first UNet call, so the patches stay inert outside the generation that armed them
            self.release()
            return
        current = _unet(self.p)
        if current is not None and current is not self.unet:
            self._follow_model_switch(current, params)
            if not self.state.armed:
                return
        if denoiser is not self.denoiser:  # a new denoiser object = a new sampling pass
            self.denoiser = denoiser
            self.locator = self._locator(denoiser)
        if self.locator is None:
            self.state.set_step(-1, 1)  # unknown schedule: RAU-Net stays off, MSW-MSA runs
            return
        self.state.set_step(self.locator.locate(float(params.sigma.max())), self.locator.total_steps)

    def _follow_model_switch(self, unet, params):
        """A new UNet under this pass: the refiner (v1.10.1 `apply_refiner` reloads the checkpoint from the CFG
        denoiser, before this callback) or another reload. Move the patches to it (the old UNet is restored exactly),
        or, when its layout cannot be patched (e.g. the SDXL refiner), run the remaining steps without HiDiffusion and
        say so in the console, under the image and in the infotext."""
        glue_host.current().remove_unet_patches(self.unet)
        latent_hw = tuple(int(v) for v in params.x.shape[-2:])
        key = f"{TITLE} refiner"
        try:
            config = pass_config(self.values, unet, latent_hw, bool(getattr(self.p, "is_hr_pass", False)))
            glue_host.current().apply_unet_patches(self.p, unet, config, self.state)
        except ValueError as error:
            self.state.warn_once("model-switch", f"{TITLE}: the checkpoint switched during sampling (refiner) to a "
                                                 f"UNet HiDiffusion cannot patch ({error}); the remaining steps ran "
                                                 "without HiDiffusion")
            glue_infotext.add_infotext(self.p, {key: "not applied"})
            self.release()
            return
        self.unet, self.base_config = unet, config
        if self.locator is not None:
            self.state.config = times_for(self.values, config, self.locator.total_steps)
        glue_infotext.add_infotext(self.p, {key: "applied"})

    def _locator(self, denoiser):
        sampler = getattr(denoiser, "sampler", None)
        try:
            steps = glue_host.current().pass_steps(sampler, self.p, *self.pass_kind)
        except Exception as error:  # a sampler from another extension with other signatures
            steps = None
            log.debug("HiDiffusion: schedule of %r not found: %s", sampler, error)
        if steps is None or len(steps.schedule) < 2:
            config = getattr(sampler, "config", None)
            name = config.name if config is not None else type(sampler).__name__
            self.state.warn_once(f"schedule {name}", f"{TITLE}: sampler {name} has no fixed schedule to tell the steps "
                                             "from; RAU-Net is off for this pass (MSW-MSA still runs)")
            return None
        locator = hidiffusion.StepLocator(steps.schedule, second_calls=steps.second_calls)
        self.state.config = times_for(self.values, self.base_config, locator.total_steps)
        return locator


CONTROLLER = Controller()


def on_cfg_denoiser(params):
    CONTROLLER.on_denoiser(params)


PRESET_KEY = f"{TITLE} preset"
FAMILY_LABELS = {v: k for k, v in FAMILIES.items() if v}


def _existing_windows(unet, blocks):
    """{part: [block indices]} of the windowed blocks the UNet has (SSD-1B lacks some transformer blocks)."""
    found = {}
    for part, index, t in blocks.window_blocks:
        try:
            transformer = next(m for m in getattr(unet, part)[index] if hasattr(m, "transformer_blocks"))
            if t < len(transformer.transformer_blocks) and index not in found.get(part, []):
                found.setdefault(part, []).append(index)
        except (IndexError, StopIteration):
            continue
    return found


def describe(values, config, unet) -> str:
    """What runs in the first pass, resolved ('Auto' included), for the infotext key `PRESET_KEY`. Written without
    ',' or ':' so it stays one infotext value; no paste field reads it, so pasting keeps the user's 'Auto'."""
    parts = [FAMILY_LABELS.get(config.family, config.family)]
    if config.rau_net:
        unit = " steps" if values.timing == "Steps" else ""
        t1, t2 = (values.t1, values.t2) if values.timing == "Steps" else (config.t1, config.t2)
        parts += [f"RAU-Net T1 {t1:g}{unit}", f"T2 {t2:g}{unit}"]
        if config.family == "sdxl":
            parts.append("aggressive" if config.aggressive else "not aggressive")
    if config.msw_msa:
        windows = _existing_windows(unet, config.blocks)
        names = {"input_blocks": "in", "output_blocks": "out"}
        parts.append("MSW-MSA " + " ".join(f"{names[part]} {'/'.join(map(str, idx))}" for part, idx in windows.items()))
    return "; ".join(parts)


def infotext(values, config=None, unet=None) -> dict:
    entries = SPEC.infotext(values)
    if values.timing == "Auto":
        for name in ("t1", "t2"):
            entries.pop(SPEC.infotext_key(SPEC.by_name[name]), None)
    if config is not None:
        entries[PRESET_KEY] = describe(values, config, unet)
    return entries


# --- the script ------------------------------------------------------------------------------------------------
class HiDiffusionScript(glue_script_base.spec_script(SPEC)):
    def process(self, p, *args):
        CONTROLLER.release(p)  # heal what an interrupted or failed generation left
        setattr(p, RUN_ATTR, None)
        try:
            values = SPEC.parse(args, p)
            if not values.enabled:
                return
            check_times(values)
            glue_host.current().check(glue_host.HIDIFFUSION, p)  # refused before sampling where it cannot run
            unet = _unet(p)
            if unet is None:
                raise ValueError(f"{TITLE}: no UNet found at sd_model.model.diffusion_model")
            config = pass_config(values, unet, (p.height // 8, p.width // 8), hires=False)
            for hires in (False, True) if getattr(p, "enable_hr", False) else (False,):
                message = conflict(p, values, hires)
                if message:
                    raise ValueError(message)
        except Exception as error:
            glue_failure.fail_generation(p, error)
            return
        setattr(p, RUN_ATTR, values)
        glue_infotext.add_infotext(p, infotext(values, config, unet))

    def process_before_every_sampling(self, p, *args, **kwargs):
        CONTROLLER.release(p)
        values = getattr(p, RUN_ATTR, None)
        if values is None:
            return
        hires = bool(getattr(p, "is_hr_pass", False))
        try:
            message = conflict(p, values, hires)
            if message:
                raise ValueError(message)
            unet = _unet(p)
            try:
                config = pass_config(values, unet, latent_size(p, kwargs, hires), hires)
            except ValueError as error:
                if not hires:
                    raise
                # a hires checkpoint of another layout (loaded after the first pass): keep the first pass's work
                CONTROLLER.state.on_warning = lambda text: glue_infotext.add_comment(p, text)
                CONTROLLER.state.warn_once("hires-model", f"{TITLE}: the hires pass runs without HiDiffusion: {error}")
                CONTROLLER.state.on_warning = None
                glue_infotext.add_infotext(p, {f"{TITLE} hires pass": "not applied"})
                return
            if config is None:
                return
            img2img = hires or hasattr(p, "init_images")
            steps = (getattr(p, "hr_second_pass_steps", 0) or p.steps) if hires else None
            CONTROLLER.arm(p, unet, values, config, (img2img, steps))
        except Exception as error:
            CONTROLLER.release(p)
            glue_failure.fail_generation(p, error)

    def postprocess(self, p, processed, *args):
        CONTROLLER.release(p)


def on_script_unloaded():
    CONTROLLER.release()


def register_axes():
    return glue_xyz.register_axes(SPEC)


# Scripts are executed again on "Reload UI": drop this file's earlier callbacks, then register once.
script_callbacks.remove_current_script_callbacks()
script_callbacks.on_script_unloaded(on_script_unloaded, name="HiDiffusion remove patches")
# the X/Y/Z plot loads after this file (metadata.ini "Before"); before_ui fires once every script is loaded
script_callbacks.on_before_ui(register_axes, name="HiDiffusion X/Y/Z axes")
glue_fields_route.publish(SPEC)
script_callbacks.on_app_started(glue_fields_route.add_route, name="HiDiffusion fields route")
