"""Host double of modules.processing: the processing objects and `process_images` call order of v1.10.1.

Order: before_process, process, init, then per batch: before_process_batch, process_batch, conds,
process_before_every_sampling, sampling (and for hires fix: before_hr, process_before_every_sampling with
`p.is_hr_pass` true, second pass), post_sample, postprocess_batch, postprocess_image per image, and at the end
postprocess. An exception in sampling propagates (postprocess not called). An interrupt or skip is not an
exception here: the CFG denoiser raises InterruptedException, `Sampler.launch_sampling` returns the last latent,
and the batch goes on through decoding and post-processing; after an interrupt no further batch starts, after a
skip the next batch runs, and `postprocess` is called (process_images_inner of v1.10.1). Callers wrap runs in
`closing(p)`, so `p.close()` always runs.
The hires pass follows v1.10.1 `StableDiffusionProcessingTxt2Img.init` / `calculate_target_resolution` /
`sample` / `sample_hr_pass`: latent upscalers ("Latent ...") interpolate the latent, other upscalers ("Lanczos",
"Nearest") decode, resize the images (modules.images.resize_image) and re-encode; "Resize width/height to"
(hr_resize_x/y) with another aspect ratio upscales to cover the target and then crops the latent
(truncate_x/y), AFTER the image conditioning was built at the uncropped size.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import devices, images, prompt_parser, rng, scripts, sd_models, sd_samplers, sd_samplers_common, shared
from .shared import opts, state

opt_C = 4
opt_f = 8


@dataclasses.dataclass(repr=False)
class StableDiffusionProcessing:
    sd_model: object = None
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: str = None
    scheduler: str = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 20
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    denoising_strength: float = None
    eta: float = None
    s_min_uncond: float = None
    s_churn: float = None
    s_tmax: float = None
    s_tmin: float = None
    s_noise: float = None
    override_settings: dict = None
    extra_generation_params: dict = None
    do_not_save_samples: bool = True
    do_not_save_grid: bool = True
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str = None
    refiner_switch_at: float = None
    is_api: bool = False
    token_merging_ratio = 0  # class attributes, not fields, as in v1.10.1
    token_merging_ratio_hr = 0

    def __post_init__(self):
        self.extra_generation_params = dict(self.extra_generation_params or {})
        self.override_settings = dict(self.override_settings or {})
        self.scripts = None
        self.script_args = []
        self.is_hr_pass = False
        self.hr_scheduler = None
        self.sampler = None
        self.c = None
        self.uc = None
        self.iteration = 0
        self.comments = {}
        self.refiner_checkpoint_info = None
        self.s_min_uncond = self.s_min_uncond if self.s_min_uncond is not None else 0.0
        self.s_churn = self.s_churn if self.s_churn is not None else 0.0
        self.s_tmin = self.s_tmin if self.s_tmin is not None else 0.0
        self.s_tmax = self.s_tmax if self.s_tmax is not None else float("inf")
        self.s_noise = self.s_noise if self.s_noise is not None else 1.0
        if self.sd_model is None:
            self.sd_model = shared.sd_model

    def comment(self, text):
        self.comments[text] = 1

    def get_token_merging_ratio(self, for_hr=False):
        if for_hr:
            return self.token_merging_ratio_hr or opts.token_merging_ratio_hr or self.token_merging_ratio or opts.token_merging_ratio
        return self.token_merging_ratio or opts.token_merging_ratio

    def txt2img_image_conditioning(self, x, width=None, height=None):
        return x.new_zeros(x.shape[0], 5, 1, 1, dtype=x.dtype, device=x.device)

    def depth2img_image_conditioning(self, source_image):
        """v1.10.1 `depth2img_image_conditioning`: MiDaS (`sd_model.depth_model`) on the first source image, repeated
        for the batch, bicubic to the size of the source's latent, then 2 (d - min) / (max - min) - 1 with min/max
        over the whole tensor. The MiDaS input here is the image resized to 384x384 (v1.10.1's AddMiDaS("dpt_hybrid")
        keeps the aspect ratio at multiples of 32 and normalises it; the stand-in depth model does not care)."""
        midas_in = torch.nn.functional.interpolate(source_image[:1].float(), size=(384, 384), mode="bicubic",
                                                   align_corners=False).repeat(self.batch_size, 1, 1, 1)
        conditioning_image = sd_samplers_common.images_tensor_to_samples(source_image * 0.5 + 0.5, model=self.sd_model)
        conditioning = torch.nn.functional.interpolate(self.sd_model.depth_model(midas_in),
                                                       size=conditioning_image.shape[2:], mode="bicubic",
                                                       align_corners=False)
        depth_min, depth_max = torch.aminmax(conditioning)
        return 2. * (conditioning - depth_min) / (depth_max - depth_min) - 1.

    def img2img_image_conditioning(self, source_image, latent_image, image_mask=None, round_image_mask=True):
        # v1.10.1 asks isinstance(self.sd_model, LatentDepth2ImageDiffusion) first (ldm's class; the double's depth
        # model is tests/support/depth_models.LatentDepth2ImageDiffusion)
        if type(self.sd_model).__name__ == "LatentDepth2ImageDiffusion":
            return self.depth2img_image_conditioning(source_image)
        if self.sd_model.cond_stage_key == "edit":  # InstructPix2Pix: the encoded source image, distribution mode
            return self.sd_model.encode_first_stage(source_image).mode()
        return latent_image.new_zeros(latent_image.shape[0], 5, 1, 1)

    def setup_prompts(self):
        count = self.batch_size * self.n_iter
        self.all_prompts = self.prompt if isinstance(self.prompt, list) else [self.prompt] * count
        self.all_negative_prompts = self.negative_prompt if isinstance(self.negative_prompt, list) else [self.negative_prompt] * count

    def setup_conds(self):
        self.uc = prompt_parser.get_learned_conditioning(self.sd_model, self.negative_prompts, self.steps)
        self.c = prompt_parser.get_multicond_learned_conditioning(self.sd_model, self.prompts, self.steps)

    def get_conds(self):
        return self.c, self.uc

    def init(self, all_prompts, all_seeds, all_subseeds):
        pass

    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        raise NotImplementedError()

    def close(self):
        self.sampler = None
        self.c = None
        self.uc = None
        self.closed = True


# v1.10.1 `StableDiffusionProcessing.sd_model` is a property: it returns `shared.sd_model` (so it follows the refiner
# and hires checkpoint reloads) and its setter does nothing.
StableDiffusionProcessing.sd_model = property(lambda self: shared.sd_model, lambda self, value: None)


@dataclasses.dataclass(repr=False)
class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    enable_hr: bool = False
    denoising_strength: float = 0.75
    hr_scale: float = 2.0
    hr_upscaler: str = "Latent"
    hr_second_pass_steps: int = 0
    hr_sampler_name: str = None
    hr_scheduler: str = None
    hr_checkpoint_name: str = None
    hr_resize_x: int = 0
    hr_resize_y: int = 0

    def __post_init__(self):
        hr_scheduler = self.hr_scheduler
        super().__post_init__()
        self.hr_scheduler = hr_scheduler
        self.latent_scale_mode = None
        self.truncate_x = self.truncate_y = 0

    def calculate_target_resolution(self):
        """v1.10.1 calculate_target_resolution (without the old-hires-fix option): cover the target, crop later."""
        if self.hr_resize_x == 0 and self.hr_resize_y == 0:
            self.extra_generation_params["Hires upscale"] = self.hr_scale
            self.hr_upscale_to_x = int(self.width * self.hr_scale)
            self.hr_upscale_to_y = int(self.height * self.hr_scale)
            return
        self.extra_generation_params["Hires resize"] = f"{self.hr_resize_x}x{self.hr_resize_y}"
        if self.hr_resize_y == 0:
            self.hr_upscale_to_x = self.hr_resize_x
            self.hr_upscale_to_y = self.hr_resize_x * self.height // self.width
        elif self.hr_resize_x == 0:
            self.hr_upscale_to_x = self.hr_resize_y * self.width // self.height
            self.hr_upscale_to_y = self.hr_resize_y
        else:
            target_w, target_h = self.hr_resize_x, self.hr_resize_y
            if self.width / self.height < self.hr_resize_x / self.hr_resize_y:
                self.hr_upscale_to_x = self.hr_resize_x
                self.hr_upscale_to_y = self.hr_resize_x * self.height // self.width
            else:
                self.hr_upscale_to_x = self.hr_resize_y * self.width // self.height
                self.hr_upscale_to_y = self.hr_resize_y
            self.truncate_x = (self.hr_upscale_to_x - target_w) // opt_f
            self.truncate_y = (self.hr_upscale_to_y - target_h) // opt_f

    def init(self, all_prompts, all_seeds, all_subseeds):
        self.hr_checkpoint_info = None
        if self.enable_hr:
            self.extra_generation_params["Denoising strength"] = self.denoising_strength
            if self.hr_checkpoint_name and self.hr_checkpoint_name != "Use same checkpoint":  # as v1.10.1 Txt2Img.init
                self.hr_checkpoint_info = sd_models.get_closet_checkpoint_match(self.hr_checkpoint_name)
                if self.hr_checkpoint_info is None:
                    raise Exception(f"Could not find checkpoint with name {self.hr_checkpoint_name}")
                self.extra_generation_params["Hires checkpoint"] = self.hr_checkpoint_info.short_title
            if self.hr_upscaler is not None:
                self.latent_scale_mode = shared.latent_upscale_modes.get(self.hr_upscaler, None)
            else:
                self.latent_scale_mode = shared.latent_upscale_modes.get(shared.latent_upscale_default_mode, "nearest")
            if self.latent_scale_mode is None and not any(x.name == self.hr_upscaler for x in shared.sd_upscalers):
                raise Exception(f"could not find upscaler named {self.hr_upscaler}")
            self.calculate_target_resolution()
            if self.hr_upscaler is not None:
                self.extra_generation_params["Hires upscaler"] = self.hr_upscaler

    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        self.sampler = sd_samplers.create_sampler(self.sampler_name, self.sd_model)
        x = self.rng.next()
        if self.scripts is not None:
            self.scripts.process_before_every_sampling(p=self, x=x, noise=x, c=conditioning, uc=unconditional_conditioning)
        samples = self.sampler.sample(self, x, conditioning, unconditional_conditioning, image_conditioning=self.txt2img_image_conditioning(x))
        if not self.enable_hr:
            return samples
        decoded_samples = None
        if self.latent_scale_mode is None:
            decoded_samples = torch.stack([self.sd_model.decode_first_stage(s[None])[0] for s in samples]).float()
        # v1.10.1 Txt2Img.sample: the hires checkpoint (None: the main one, e.g. after a refiner) is loaded here
        with sd_models.SkipWritingToConfig():
            sd_models.reload_model_weights(info=self.hr_checkpoint_info)
        return self.sample_hr_pass(samples, decoded_samples, seeds, subseeds, subseed_strength, prompts)

    def sample_hr_pass(self, samples, decoded_samples, seeds, subseeds, subseed_strength, prompts):
        if state.interrupted:
            return samples
        self.is_hr_pass = True
        target_width, target_height = self.hr_upscale_to_x, self.hr_upscale_to_y
        self.sampler = sd_samplers.create_sampler(self.hr_sampler_name or self.sampler_name, self.sd_model)
        if self.latent_scale_mode is not None:
            samples = torch.nn.functional.interpolate(samples, size=(target_height // opt_f, target_width // opt_f),
                                                      mode=self.latent_scale_mode["mode"],
                                                      antialias=self.latent_scale_mode["antialias"])
            image_conditioning = self.txt2img_image_conditioning(samples)
        else:
            lowres = torch.clamp((decoded_samples + 1.0) / 2.0, min=0.0, max=1.0)
            batch_images = []
            for x_sample in lowres:
                image = Image.fromarray((255. * np.moveaxis(x_sample.cpu().numpy(), 0, 2)).astype(np.uint8))
                image = images.resize_image(0, image, target_width, target_height, upscaler_name=self.hr_upscaler)
                batch_images.append(np.moveaxis(np.array(image).astype(np.float32) / 255.0, 2, 0))
            decoded_samples = torch.from_numpy(np.array(batch_images)).to(shared.device)
            samples = sd_samplers_common.images_tensor_to_samples(decoded_samples, model=self.sd_model)
            image_conditioning = self.img2img_image_conditioning(decoded_samples, samples)
        # the crop of "Resize width/height to" comes after the image conditioning was made (as in v1.10.1)
        samples = samples[:, :, self.truncate_y // 2:samples.shape[2] - (self.truncate_y + 1) // 2,
                          self.truncate_x // 2:samples.shape[3] - (self.truncate_x + 1) // 2]
        self.rng = rng.ImageRNG(samples.shape[1:], self.seeds)
        noise = self.rng.next()
        if self.hr_checkpoint_info is None:
            self.hr_c, self.hr_uc = self.c, self.uc  # v1.10.1 calculate_hr_conds: same prompts, cached conds
        else:  # another model: calculate_hr_conds encodes the prompts with it
            self.hr_uc = prompt_parser.get_learned_conditioning(self.sd_model, self.negative_prompts, self.steps)
            self.hr_c = prompt_parser.get_multicond_learned_conditioning(self.sd_model, self.prompts, self.steps)
        if self.scripts is not None:
            self.scripts.before_hr(self)
            self.scripts.process_before_every_sampling(p=self, x=samples, noise=noise, c=self.hr_c, uc=self.hr_uc)
        samples = self.sampler.sample_img2img(self, samples, noise, self.hr_c, self.hr_uc,
                                              steps=self.hr_second_pass_steps or self.steps, image_conditioning=image_conditioning)
        self.sampler = None
        self.is_hr_pass = False
        return samples


@dataclasses.dataclass(repr=False)
class StableDiffusionProcessingImg2Img(StableDiffusionProcessing):
    init_images: list = None
    denoising_strength: float = 0.75
    image_mask: Any = None
    inpainting_fill: int = 1
    image_cfg_scale: float = None
    initial_noise_multiplier: float = 1.0

    def init(self, all_prompts, all_seeds, all_subseeds):
        self.extra_generation_params["Denoising strength"] = self.denoising_strength
        self.image_cfg_scale = self.image_cfg_scale if shared.sd_model.cond_stage_key == "edit" else None
        self.sampler = sd_samplers.create_sampler(self.sampler_name, self.sd_model)

        imgs = [np.moveaxis(np.array(img.convert("RGB").resize((self.width, self.height)), dtype=np.float32) / 255.0, 2, 0)
                for img in self.init_images]
        batch = np.expand_dims(imgs[0], 0).repeat(self.batch_size, axis=0) if len(imgs) == 1 else np.array(imgs)
        image = torch.from_numpy(batch)
        self.init_latent = sd_samplers_common.images_tensor_to_samples(image, model=self.sd_model)

        self.mask = self.nmask = None
        if self.image_mask is not None:
            latmask = self.image_mask.convert("L").resize((self.init_latent.shape[3], self.init_latent.shape[2]))
            latmask = np.around(np.array(latmask, dtype=np.float32) / 255)
            latmask = np.tile(latmask[None], (self.init_latent.shape[1], 1, 1))
            self.mask = torch.asarray(1.0 - latmask)
            self.nmask = torch.asarray(latmask)
        self.image_conditioning = self.img2img_image_conditioning(image * 2 - 1, self.init_latent, self.image_mask)

    def get_token_merging_ratio(self, for_hr=False):
        return self.token_merging_ratio or ("token_merging_ratio" in self.override_settings and opts.token_merging_ratio) or opts.token_merging_ratio_img2img or opts.token_merging_ratio

    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        x = self.rng.next()
        if self.initial_noise_multiplier != 1.0:
            x *= self.initial_noise_multiplier
        if self.scripts is not None:
            self.scripts.process_before_every_sampling(p=self, x=self.init_latent, noise=x, c=conditioning, uc=unconditional_conditioning)
        samples = self.sampler.sample_img2img(self, self.init_latent, x, conditioning, unconditional_conditioning, image_conditioning=self.image_conditioning)
        if self.mask is not None:
            blended = samples * self.nmask + self.init_latent * self.mask
            if self.scripts is not None:
                mba = scripts.MaskBlendArgs(samples, self.nmask, self.init_latent, self.mask, blended)
                self.scripts.on_mask_blend(self, mba)
                blended = mba.blended_latent
            samples = blended
        return samples


class Processed:
    def __init__(self, p, images_list, latents=None, infotexts=None):
        self.images = images_list
        self.latents = latents
        self.infotexts = infotexts or []
        self.info = self.infotexts[0] if self.infotexts else ""
        self.extra_generation_params = dict(p.extra_generation_params)
        self.all_seeds = list(getattr(p, "all_seeds", []))


def create_infotext(p, index=0):
    """`prompt\\nNegative prompt: ...\\nSteps: ..., Sampler: ..., <extra_generation_params>` as the WebUI writes it."""
    from .infotext_utils import quote
    params = {"Steps": p.steps, "Sampler": p.sampler_name, "Schedule type": p.scheduler, "CFG scale": p.cfg_scale,
              "Image CFG scale": getattr(p, "image_cfg_scale", None),  # v1.10.1 create_infotext: None is left out
              "Seed": p.all_seeds[index], "Size": f"{p.width}x{p.height}"}
    params.update(p.extra_generation_params)
    generation = ", ".join(k if k == v else f"{k}: {quote(v)}" for k, v in params.items() if v is not None)
    negative = f"\nNegative prompt: {p.all_negative_prompts[index]}" if p.all_negative_prompts[index] else ""
    return f"{p.all_prompts[index]}{negative}\n{generation}".strip()


def process_images(p: StableDiffusionProcessing) -> Processed:
    """The WebUI generates in a request thread, where autograd is on (torch's per-thread default): hooks such as
    `before_process` / `process` run with grad enabled, only sampling and decoding are inside `torch.no_grad()`.
    Enabled here explicitly, so a test module that switched grad off globally cannot hide in-place errors."""
    with torch.enable_grad():
        return _process_images(p)


def _process_images(p: StableDiffusionProcessing) -> Processed:
    """Follows process_images of v1.10.1: `before_process`, then each `override_settings` entry set with opts.set
    (the stored values restored at the end, also after an exception, unless `override_settings_restore_afterwards`
    is False; only settings present in opts.data are stored), then the generation."""
    if p.scripts is not None:
        p.scripts.before_process(p)
    stored_opts = {k: opts.data[k] for k in p.override_settings if k in opts.data}
    try:
        # v1.10.1: load the main checkpoint (and FP8 storage as set) now, after before_process; overrides after it
        if sd_models.checkpoint_aliases.get(p.override_settings.get("sd_model_checkpoint")) is None:
            p.override_settings.pop("sd_model_checkpoint", None)
            sd_models.reload_model_weights()
        for k, v in p.override_settings.items():
            opts.set(k, v, is_api=True, run_callbacks=False)
            if k == "sd_model_checkpoint":
                sd_models.reload_model_weights()
        sd_samplers.fix_p_invalid_sampler_and_scheduler(p)
        return process_images_inner(p)
    finally:
        if p.override_settings_restore_afterwards:
            for k, v in stored_opts.items():
                setattr(opts, k, v)


def process_images_inner(p: StableDiffusionProcessing) -> Processed:
    seed = int(p.seed) if p.seed not in (None, -1) else 1234
    p.setup_prompts()
    p.all_seeds = [seed + i for i in range(len(p.all_prompts))]
    p.all_subseeds = [seed + i for i in range(len(p.all_prompts))]

    if p.refiner_checkpoint not in (None, "", "None", "none"):  # v1.10.1 process_images_inner
        p.refiner_checkpoint_info = sd_models.get_closet_checkpoint_match(p.refiner_checkpoint)
        if p.refiner_checkpoint_info is None:
            raise Exception(f"Could not find checkpoint with name {p.refiner_checkpoint}")

    if p.scripts is not None:
        p.scripts.process(p)

    images, latents, infotexts = [], [], []
    with torch.no_grad():
        with devices.autocast():
            p.init(p.all_prompts, p.all_seeds, p.all_subseeds)
        for n in range(p.n_iter):
            p.iteration = n
            if state.skipped:  # v1.10.1 process_images_inner: Skip ends one batch only
                state.skipped = False
            if state.interrupted or state.stopping_generation:
                break
            sd_models.reload_model_weights()  # v1.10.1: back to the main checkpoint, e.g. after the refiner
            batch = slice(n * p.batch_size, (n + 1) * p.batch_size)
            p.prompts, p.negative_prompts = p.all_prompts[batch], p.all_negative_prompts[batch]
            p.seeds, p.subseeds = p.all_seeds[batch], p.all_subseeds[batch]
            p.rng = rng.ImageRNG((opt_C, p.height // opt_f, p.width // opt_f), p.seeds)

            if p.scripts is not None:
                p.scripts.before_process_batch(p, batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds)
                p.scripts.process_batch(p, batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds)
            p.setup_conds()

            with devices.without_autocast() if devices.unet_needs_upcast else devices.autocast():
                samples = p.sample(conditioning=p.c, unconditional_conditioning=p.uc, seeds=p.seeds, subseeds=p.subseeds,
                                   subseed_strength=p.subseed_strength, prompts=p.prompts)
            if p.scripts is not None:
                ps = scripts.PostSampleArgs(samples)
                p.scripts.post_sample(p, ps)
                samples = ps.samples
            latents.append(samples)

            decoded = torch.clamp((p.sd_model.decode_first_stage(samples) + 1.0) / 2.0, 0.0, 1.0)
            if p.scripts is not None:
                p.scripts.postprocess_batch(p, decoded, batch_number=n)
            for i, x_sample in enumerate(decoded):
                p.batch_index = i
                image = Image.fromarray((255. * np.moveaxis(x_sample.cpu().numpy(), 0, 2)).astype(np.uint8))
                if p.scripts is not None:
                    pp = scripts.PostprocessImageArgs(image)
                    p.scripts.postprocess_image(p, pp)
                    image = pp.image
                infotexts.append(create_infotext(p, n * p.batch_size + i))
                images.append(image)

    res = Processed(p, images, latents=torch.cat(latents) if latents else None, infotexts=infotexts)
    if p.scripts is not None:  # also after an interrupt (process_images_inner of v1.10.1)
        p.scripts.postprocess(p, res)
    return res
