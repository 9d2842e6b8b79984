"""Image guidance of edit models, and what CFG++ does with it.

Rows (WebUI v1.10.1 ``CFGDenoiser.forward``, and diffusers' InstructPix2Pix pipelines): one model call on the
3-way batch ``[cond + image, uncond + image, uncond + zeros]`` gives

    D_c = D(x; text, image)      D_i = D(x; ∅, image)      D_∅ = D(x; ∅, ∅)

and ``combine_denoised_for_edit_model`` guides with the text scale s_t (CFG × the denoiser's
``cond_scale_miltiplier``) and the image scale s_i ("Image CFG Scale"):

    D = D_∅ + s_t · (D_c − D_i) + s_i · (D_i − D_∅)                                             (1)

At s_i = 1 exactly the WebUI runs the model like a plain one (two rows, both with the image): D = D_i + s_t (D_c − D_i),
which (1) also gives, but then the unconditional row it keeps is D_i, not D_∅.

CFG++ with an edit model (Chung et al., "CFG++: manifold-constrained classifier free guidance", arXiv 2406.08070).
Our CFG++ samplers take x̂0 from the guided prediction and every direction / re-noising estimate from the fully
unconditional row, exactly as for a plain model:

    D_λ = D_∅ + λ_t · (D_c − D_i) + λ_i · (D_i − D_∅)        λ_t = CFG × m (m: the CFG++ convention), λ_i = s_i
    Euler CFG++:  x_{k+1} = D_λ + σ_{k+1} · (x_k − D_∅) / σ_k                                    (2)

i.e. (1) with λ in place of the scales (the host computes it; the convention multiplier scales the text term only,
as the WebUI's own DDIM CFG++ does), and D_∅ = the uncond + zeros row (``last_noise_uncond`` of the 3-way batch).

Why this is the right generalisation (the paper's manifold argument): a DDIM/Euler step re-noises x̂0 with the
noise the network sees in x_k. If x̂0 lies on the clean-data manifold and the noise is the one the *unconditional*
model explains, x_{k+1} stays on the noisy manifold of level σ_{k+1}; CFG's extrapolation (scale > 1) pushes x̂0
off the manifold and its guided noise estimate carries the guidance into the next input. CFG++ keeps λ ∈ [0, 1],
so x̂0 interpolates posterior means, and re-noises with ε̂_∅. With two conditions, (2)'s x̂0 is

    D_λ = (1 − λ_i) · D_∅ + (λ_i − λ_t) · D_i + λ_t · D_c,

a convex combination of three posterior means exactly when 0 ≤ λ_t ≤ λ_i ≤ 1 (use Image CFG ≤ 1 and a text λ
no larger with CFG++), and the re-noising estimate must be the one with *no* condition, D_∅: it is the only row
that explains the noise without pulling towards the text or the image.

Reductions (tested): λ_t = λ_i = 0 gives D_λ = D_∅ and (2) is the base sampler on D_∅ (the base sampler at CFG 0,
Image CFG 0); replacing D_∅ by D_λ in (2) gives x_{k+1} = D_λ + σ_{k+1}(x_k − D_λ)/σ_k, the base sampler on the
plain edit-CFG prediction (1) at s_t = λ_t, s_i = λ_i.
"""
from __future__ import annotations

import torch


def edit_rows(x_out: torch.Tensor):
    """(D_c, D_i, D_∅) from the model output of the 3-way batch (rows in the WebUI's order)."""
    return x_out.chunk(3)


def combine_edit(d_cond: torch.Tensor, d_image: torch.Tensor, d_uncond: torch.Tensor, text_scale: float,
                 image_scale: float) -> torch.Tensor:
    """Equation (1) of the module doc (the WebUI's ``combine_denoised_for_edit_model``)."""
    return d_uncond + text_scale * (d_cond - d_image) + image_scale * (d_image - d_uncond)
