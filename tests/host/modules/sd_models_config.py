"""Host double of modules.sd_models_config (v1.10.1): how the WebUI picks a checkpoint's config.

`find_checkpoint_config(state_dict, info)`: a `.yaml` next to the checkpoint file
(`find_checkpoint_config_near_filename`), else `guess_model_config_from_state_dict(state_dict, filename)`, which
follows v1.10.1 branch for branch (SD3, SDXL base with 9 channels -> inpainting else base, SDXL refiner, depth,
unCLIP, SD2 inpainting / v / eps, SD1 inpainting (9) / InstructPix2Pix (8), AltDiffusion, default). Both are module
attributes read at call time, as `sd_models.load_model` / `reload_model_weights` call them, so an extension can wrap
them.
The config paths are the v1.10.1 file names under a stand-in root (no file is read).
Differs: v1.10.1 `is_using_v_parameterization_for_sd2` runs a full-size SD2 UNet on the state dict (output mean at
t=999 below -1 means v); the double cannot run full-size weights and reads the key `HOST_DOUBLE_SD2_V` instead.
"""
import os

from . import paths

sd_configs_path = os.path.join(paths.script_path, "configs")
sd_repo_configs_path = os.path.join(paths.script_path, "repositories", "stable-diffusion-stability-ai", "configs",
                                    "stable-diffusion")
sd_xl_repo_configs_path = os.path.join(paths.script_path, "repositories", "generative-models", "configs", "inference")

config_default = os.path.join(sd_configs_path, "v1-inference.yaml")
config_sd2 = os.path.join(sd_repo_configs_path, "v2-inference.yaml")
config_sd2v = os.path.join(sd_repo_configs_path, "v2-inference-v.yaml")
config_sd2_inpainting = os.path.join(sd_repo_configs_path, "v2-inpainting-inference.yaml")
config_sdxl = os.path.join(sd_xl_repo_configs_path, "sd_xl_base.yaml")
config_sdxl_refiner = os.path.join(sd_xl_repo_configs_path, "sd_xl_refiner.yaml")
config_sdxl_inpainting = os.path.join(sd_configs_path, "sd_xl_inpaint.yaml")
config_depth_model = os.path.join(sd_repo_configs_path, "v2-midas-inference.yaml")
config_unclip = os.path.join(sd_repo_configs_path, "v2-1-stable-unclip-l-inference.yaml")
config_unopenclip = os.path.join(sd_repo_configs_path, "v2-1-stable-unclip-h-inference.yaml")
config_inpainting = os.path.join(sd_configs_path, "v1-inpainting-inference.yaml")
config_instruct_pix2pix = os.path.join(sd_configs_path, "instruct-pix2pix.yaml")
config_alt_diffusion = os.path.join(sd_configs_path, "alt-diffusion-inference.yaml")
config_alt_diffusion_m18 = os.path.join(sd_configs_path, "alt-diffusion-m18-inference.yaml")
config_sd3 = os.path.join(sd_configs_path, "sd3-inference.yaml")

HOST_DOUBLE_SD2_V = "host_double.sd2_v_parameterization"


def is_using_v_parameterization_for_sd2(state_dict):
    return bool(state_dict.get(HOST_DOUBLE_SD2_V, False))


def guess_model_config_from_state_dict(sd, filename):
    sd2_cond_proj_weight = sd.get('cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight', None)
    diffusion_model_input = sd.get('model.diffusion_model.input_blocks.0.0.weight', None)
    sd2_variations_weight = sd.get('embedder.model.ln_final.weight', None)

    if "model.diffusion_model.x_embedder.proj.weight" in sd:
        return config_sd3
    if sd.get('conditioner.embedders.1.model.ln_final.weight', None) is not None:
        return config_sdxl_inpainting if diffusion_model_input.shape[1] == 9 else config_sdxl
    if sd.get('conditioner.embedders.0.model.ln_final.weight', None) is not None:
        return config_sdxl_refiner
    elif sd.get('depth_model.model.pretrained.act_postprocess3.0.project.0.bias', None) is not None:
        return config_depth_model
    elif sd2_variations_weight is not None and sd2_variations_weight.shape[0] == 768:
        return config_unclip
    elif sd2_variations_weight is not None and sd2_variations_weight.shape[0] == 1024:
        return config_unopenclip
    if sd2_cond_proj_weight is not None and sd2_cond_proj_weight.shape[1] == 1024:
        if diffusion_model_input.shape[1] == 9:
            return config_sd2_inpainting
        elif is_using_v_parameterization_for_sd2(sd):
            return config_sd2v
        else:
            return config_sd2
    if diffusion_model_input is not None:
        if diffusion_model_input.shape[1] == 9:
            return config_inpainting
        if diffusion_model_input.shape[1] == 8:
            return config_instruct_pix2pix
    if sd.get('cond_stage_model.roberta.embeddings.word_embeddings.weight', None) is not None:
        if sd.get('cond_stage_model.transformation.weight').size()[0] == 1024:
            return config_alt_diffusion_m18
        return config_alt_diffusion
    return config_default


def find_checkpoint_config(state_dict, info):
    if info is None:
        return guess_model_config_from_state_dict(state_dict, "")
    config = find_checkpoint_config_near_filename(info)
    if config is not None:
        return config
    return guess_model_config_from_state_dict(state_dict, info.filename)


def find_checkpoint_config_near_filename(info):
    if info is None:
        return None
    config = f"{os.path.splitext(info.filename)[0]}.yaml"
    if os.path.exists(config):
        return config
    return None
