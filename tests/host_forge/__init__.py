"""A small double of the Forge-family host contract, written from reForge's source
(Panchovix/stable-diffusion-webui-reForge, branch main, read at 3b56b268), installed over the A1111 double
(tests/host/modules) for one test: `install.ForgeDouble`.

What it reproduces, each in the module named (the function followed is cited there):
- ldm_patched_unet: the UNet call structure of ldm_patched/ldm/modules/diffusionmodules/openaimodel.py
  (`UNetModel._forward` runs blocks through `forward_timestep_embed`, bypassing the blocks' own forward; input,
  output and forward-timestep-embed patches; Upsample gets `output_shape=`) and the transformer blocks of
  ldm_patched/ldm/modules/attention.py (`SpatialTransformer.forward(x, context, transformer_options)`,
  `BasicTransformerBlock` attn1 patches / attn1 replace patches, `CrossAttention.forward(x, context, value, mask)`).
- model_patcher: `ModelPatcher` / `UnetPatcher` (ldm_patched/modules/model_patcher.py, modules_forge/unet_patcher.py):
  clone, block / attn1 patches, post-CFG functions with disable_cfg1_optimization, `extra_concat_condition`;
  `ForgeObjects.shallow_copy` (modules_forge/forge_loader.py).
- sampling: `sampling_function` / `cfg_function` / `calc_cond_batch` (ldm_patched/modules/samplers.py) returning
  the guided x0, and `BaseModel.apply_model` (ldm_patched/modules/model_base.py).
- cfg_denoiser: `CFGDenoiser.forward` (modules/sd_samplers_cfg_denoiser.py): callbacks, hires CFG, skipped
  uncond, model options, shape-checked `c_concat`, `last_noise_uncond` = the guided prediction.
- native_samplers: reForge's own CFG++ samplers and their table entries (ldm_patched/k_diffusion/sampling.py,
  modules_forge/forge_alter_samplers.py).
- install: `modules_forge` / `ldm_patched` present, `forge_objects` on the model and reset before every
  `process_before_every_sampling` (modules/processing.py), the denoiser and sampler table swapped in.

Deliberately not reproduced (documented differences that do not touch what the suite relies on): reForge's
`model_sampling.timestep` rounds sigma to the nearest of 1000 discrete timesteps and its attention is
`optimized_attention`; the double keeps the k-diffusion CompVis scalings and ldm's attention of the A1111
double, so one tiny model gives the same numbers on both doubles and a comparison isolates the host contract.
AND prompts, area/mask conds, ControlNet, hooks and memory management are left out; SD 1.x layouts only.
"""
