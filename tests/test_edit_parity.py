"""Parity with diffusers' StableDiffusionXLInstructPix2PixPipeline (0.29.2): one denoising step of our SDXL edit
path through the host double equals the pipeline's step on the converted weights, for SDXL InstructPix2Pix (discrete
ε schedule, image latent unscaled) and CosXL Edit (EDM v-prediction, image latent × scaling factor,
is_cosxl_edit=True). What is compared: the guided x0 of the first step (conditioning, the 3-way batch, image CFG,
the denoiser) and the latent after it. fp32; tolerance 1e-4 of the output's scale."""
import numpy as np
import pytest
import torch
from PIL import Image

from modules import script_callbacks
from support.edit_models import (COSXL_KEYS, POOLED_DIM, diffusers_pipeline, edit_model, load_checkpoint,
                                 sdxl_conditioner)
from support.generation import reset_host, txt2img
from support.scripts_loader import load_script, unload_callbacks

SIZE = 64
STEPS = 4  # Euler "Automatic": t = 999, 666, 333, 0 on the discrete schedule (integers: no interpolation rule differs)


@pytest.fixture
def edit_script():
    reset_host()
    script = load_script("edit_models.py")
    yield script
    unload_callbacks("edit_models.py")
    script.glue_edit.uninstall()


def photo(seed=5):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, SIZE, dtype=np.float32)
    rgb = np.stack([base[None, :].repeat(SIZE, 0), base[:, None].repeat(SIZE, 1), np.full((SIZE, SIZE), 90.0)], -1)
    return Image.fromarray(np.clip(rgb + rng.normal(0, 20, rgb.shape), 0, 255).astype(np.uint8))


class Recorder:
    """x of every CFG-denoiser call (first row) and the guided x0 it returned."""

    def __init__(self):
        self.x, self.denoised = [], []

    def __enter__(self):
        script_callbacks.on_cfg_denoiser(self.on_denoiser)
        script_callbacks.on_cfg_after_cfg(self.on_after)
        return self

    def __exit__(self, *exc):
        script_callbacks.remove_callbacks_for_function(self.on_denoiser)
        script_callbacks.remove_callbacks_for_function(self.on_after)

    def on_denoiser(self, params):
        self.x.append(params.x[:1].clone())

    def on_after(self, params):
        self.denoised.append(params.x.clone())


def run_diffusers(model, cosxl, x_start, image, cfg, image_cfg):
    """The pipeline from `x_start` (our first x): (latent after step 1, guided x0 of step 1)."""
    pipe = diffusers_pipeline(model, cosxl)
    cond = model.get_learned_conditioning(["a cat"])
    uncond = model.get_learned_conditioning(["blurry"])
    outputs, step = [], pipe.scheduler.step

    def recording_step(model_output, timestep, sample, **kwargs):
        out = step(model_output, timestep, sample, **{**kwargs, "return_dict": True})
        outputs.append(out)
        return (out.prev_sample,)

    pipe.scheduler.step = recording_step
    pipe.scheduler.set_timesteps(STEPS)
    latents = x_start / pipe.scheduler.init_noise_sigma
    with torch.no_grad():
        pipe(image=image, prompt_embeds=cond["crossattn"], negative_prompt_embeds=uncond["crossattn"],
             pooled_prompt_embeds=cond["vector"][:, :POOLED_DIM],
             negative_pooled_prompt_embeds=uncond["vector"][:, :POOLED_DIM], latents=latents,
             num_inference_steps=STEPS, guidance_scale=cfg, image_guidance_scale=image_cfg, height=SIZE, width=SIZE,
             output_type="latent")
    return outputs[0].prev_sample, outputs[0].pred_original_sample


@pytest.mark.parametrize("cosxl", [False, True], ids=["sdxl_ip2p", "cosxl_edit"])
def test_one_step_equals_diffusers_pipeline(edit_script, cosxl):
    torch.manual_seed(0)
    model = edit_model("sdxl", vae=True)
    config = load_checkpoint(model, "tiny_cosxl_edit" if cosxl else "tiny_sdxl_ip2p", **(COSXL_KEYS if cosxl else {}))
    sdxl_conditioner(model, SIZE, SIZE)  # after loading: install_model gives it the double's text encoder
    assert config.endswith("cosxl_edit.yaml" if cosxl else "sd_xl_instruct_pix2pix.yaml")
    image, cfg, image_cfg = photo(), 5.0, 1.5
    with Recorder() as rec:
        txt2img([edit_script.EditModelScript()], [{"enabled": True, "image": image, "image_cfg_scale": image_cfg}],
                arg_counts=[3], steps=STEPS, cfg_scale=cfg, width=SIZE, height=SIZE, sampler_name="Euler",
                scheduler="Automatic")
    assert len(rec.x) == STEPS and len(rec.denoised) == STEPS
    ours_x1, ours_x0 = rec.x[1], rec.denoised[0]

    theirs_x1, theirs_x0 = run_diffusers(model, cosxl, rec.x[0], image, cfg, image_cfg)
    scale = theirs_x1.abs().max()
    err_x1 = float((ours_x1 - theirs_x1).abs().max() / scale)
    err_x0 = float((ours_x0 - theirs_x0).abs().max() / theirs_x0.abs().max())
    print(f"\n{'cosxl_edit' if cosxl else 'sdxl_ip2p'}: step-1 latent max|diff|/scale = {err_x1:.2e}, "
          f"guided x0 {err_x0:.2e} (scale {float(scale):.3g})")
    assert err_x1 <= 1e-4 and err_x0 <= 1e-4
