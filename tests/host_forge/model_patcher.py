"""The patcher objects of the Forge family (what extensions use to patch sampling), and `forge_objects`.

Follows reForge ldm_patched/modules/model_patcher.py:
- `set_model_options_post_cfg_function(model_options, fn, disable_cfg1_optimization)`: appends `fn` to a NEW
  `sampler_post_cfg_function` list and sets `disable_cfg1_optimization`;
- `ModelPatcher.set_model_patch(patch, name)`: appends to `model_options["transformer_options"]["patches"][name]`;
  `set_model_input_block_patch`, `set_model_input_block_patch_after_skip`, `set_model_output_block_patch`,
  `set_model_attn1_patch`, `set_model_forward_timestep_embed_patch` name it; `set_model_attn1_replace` /
  `set_model_options_patch_replace` put a patch at `patches_replace["attn1"][(block_name, number[, index])]`;
  `set_model_sampler_post_cfg_function`.
and modules_forge/unet_patcher.py `UnetPatcher`: `clone()` shares the model and deep-copies `model_options`,
keeps `extra_concat_condition` / `controlnet_linked_list`, `parent` = the patcher cloned;
modules_forge/forge_loader.py `ForgeObjects.shallow_copy()`: a new holder of the same unet/clip/vae objects.
"""
from __future__ import annotations

import copy


def set_model_options_post_cfg_function(model_options, post_cfg_function, disable_cfg1_optimization=False):
    functions = model_options.get("sampler_post_cfg_function", [])
    model_options["sampler_post_cfg_function"] = functions + [post_cfg_function]
    if disable_cfg1_optimization:
        model_options["disable_cfg1_optimization"] = True
    return model_options


def set_model_options_patch_replace(model_options, patch, name, block_name, number, transformer_index=None):
    to = dict(model_options["transformer_options"])
    to["patches_replace"] = {**to.get("patches_replace", {})}
    to["patches_replace"][name] = {**to["patches_replace"].get(name, {})}
    block = (block_name, number) if transformer_index is None else (block_name, number, transformer_index)
    to["patches_replace"][name][block] = patch
    model_options["transformer_options"] = to
    return model_options


class ModelPatcher:
    def __init__(self, model):
        self.model = model
        self.model_options = {"transformer_options": {}}
        self.parent = None

    def set_model_patch(self, patch, name):
        to = self.model_options["transformer_options"]
        to.setdefault("patches", {})
        to["patches"][name] = to["patches"].get(name, []) + [patch]

    def set_model_input_block_patch(self, patch):
        self.set_model_patch(patch, "input_block_patch")

    def set_model_input_block_patch_after_skip(self, patch):
        self.set_model_patch(patch, "input_block_patch_after_skip")

    def set_model_output_block_patch(self, patch):
        self.set_model_patch(patch, "output_block_patch")

    def set_model_attn1_patch(self, patch):
        self.set_model_patch(patch, "attn1_patch")

    def set_model_forward_timestep_embed_patch(self, patch):
        self.set_model_patch(patch, "forward_timestep_embed_patch")

    def set_model_attn1_replace(self, patch, block_name, number, transformer_index=None):
        self.model_options = set_model_options_patch_replace(self.model_options, patch, "attn1", block_name, number,
                                                             transformer_index)

    def set_model_sampler_post_cfg_function(self, post_cfg_function, disable_cfg1_optimization=False):
        self.model_options = set_model_options_post_cfg_function(self.model_options, post_cfg_function,
                                                                 disable_cfg1_optimization)


class UnetPatcher(ModelPatcher):
    def __init__(self, model):
        super().__init__(model)
        self.extra_concat_condition = None
        self.controlnet_linked_list = None

    def clone(self):
        n = UnetPatcher(self.model)
        n.model_options = copy.deepcopy(self.model_options)
        n.extra_concat_condition = self.extra_concat_condition
        n.controlnet_linked_list = self.controlnet_linked_list
        n.parent = self
        return n


class ForgeObjects:
    def __init__(self, unet, clip=None, vae=None, clipvision=None):
        self.unet, self.clip, self.vae, self.clipvision = unet, clip, vae, clipvision

    def shallow_copy(self):
        return ForgeObjects(self.unet, self.clip, self.vae, self.clipvision)
