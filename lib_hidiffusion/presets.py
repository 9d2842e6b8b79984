"""HiDiffusion presets: model family from the UNet structure, official T1/T2 thresholds, the immutable config.

Official numbers (hidiffusion 0.1.10, ``switching_threshold_ratio_dict``), chosen from the *latent* size:

=============  =====================================  ======  ======  ==========
family         latent size (H, W)                     T1      T2      aggressive
=============  =====================================  ======  ======  ==========
sd15 / sd21    H < 256 or W < 256  (below 2048 px)    0.4     0.0     no
sd15 / sd21    otherwise                              0.7     0.3     no
sdxl           H < 512 or W < 512  (below 4096 px)    0.4     0.0     yes
sdxl           otherwise                              0.7     0.3     no
sdxl_turbo     any                                    0.5     0.0     no
=============  =====================================  ======  ======  ==========

The aggressive schedule (SDXL below 4096 px) runs RAD/RAU for the first ``int(8/50 * N)`` steps and then the
avg-pool/bicubic pair until ``int(T1 * N)``. Times are fractions of the steps actually run; the step index
where a switch happens is ``int(N * ratio)`` exactly as the official code computes it.

Where each family patches (diffusers key in the official code -> ldm/sgm module of the WebUI UNet):

SD 1.5 / SD 2.1 (4 levels; input_blocks 1,2 | 3=Down | 4,5 | 6=Down | 7,8 | 9=Down | 10,11)

- RAD  (T1) ``down_blocks.0.downsamplers.0.conv`` -> ``input_blocks[3][0]`` (Downsample, conv ``.op``)
- RAU  (T1) ``up_blocks.2.upsamplers.0.conv``     -> ``output_blocks[8][2]`` (Upsample, conv ``.conv``)
- pool (T2) ``down_blocks.1`` after resnet/attn 0 -> after ``input_blocks[4]``
- bicubic (T2) ``up_blocks.2`` after resnet/attn 1 -> after ``output_blocks[7]``
- MSW-MSA ``down_blocks.0.attentions.{0,1}``, ``up_blocks.3.attentions.{0,1,2}`` (transformer_blocks.0)
  -> ``input_blocks[1,2][1]``, ``output_blocks[9,10,11][1]`` ``.transformer_blocks[0].attn1``

SDXL (3 levels; input_blocks 1,2 | 3=Down | 4,5 | 6=Down | 7,8; transformer depth 2 at level 1)

- pool (T1) ``down_blocks.1`` after resnet/attn 0 -> after ``input_blocks[4]``
- bicubic (T1) ``up_blocks.1`` after resnet/attn 1 -> after ``output_blocks[4]``
- RAD  (T2) ``down_blocks.1.downsamplers.0.conv`` -> ``input_blocks[6][0]`` (Downsample)
- RAU  (T2) ``up_blocks.0.upsamplers.0.conv``     -> ``output_blocks[2][2]`` (Upsample)
- MSW-MSA ``down_blocks.1.attentions.{0,1}``, ``up_blocks.1.attentions.{0,1,2}`` (transformer_blocks.{0,1})
  -> ``input_blocks[4,5][1]``, ``output_blocks[3,4,5][1]`` ``.transformer_blocks[0,1].attn1``

SDXL-Turbo: the SDXL pool/bicubic pair only (no RAD/RAU) and the SDXL MSW-MSA blocks.

The official RAU is diffusers' ``Upsample2D`` interpolating (nearest) to the recorded skip size (its
``num_upsamplers += 12`` hack forces ``upsample_size`` on every up block), then the conv: during the RAU-Net
phases we do the same on every ldm ``Upsample`` (see ``rau_net``).
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

FAMILIES = ("sd15", "sd21", "sdxl", "sdxl_turbo")
AGGRESSIVE_STEP = 8  # official ``aggressive_step``: RAD/RAU for int(8/50 * N) steps in aggressive mode

# the official switching_threshold_ratio_dict
OFFICIAL_RATIOS = {
    "sd15_1024": (0.4, 0.0),
    "sd15_2048": (0.7, 0.3),
    "sdxl_2048": (0.4, 0.0),
    "sdxl_4096": (0.7, 0.3),
    "sdxl_turbo_1024": (0.5, 0.0),
}


@dataclasses.dataclass(frozen=True)
class BlockMap:
    """ldm/sgm module indices patched for one layout (see the module docstring)."""

    rad_input: Optional[int]  # input_blocks[rad_input][0] is the resolution-aware Downsample (None: no RAD)
    rau_output: Optional[int]  # output_blocks[rau_output][-1] is the matching Upsample
    pool_input: int           # avg-pool after input_blocks[pool_input]
    bicubic_output: int       # bicubic back to the pre-pool size after output_blocks[bicubic_output]
    rad_role: str             # "T1" or "T2": which threshold gates RAD/RAU
    pool_role: str            # "T1" or "T2": which threshold gates the pool pair
    window_blocks: Tuple[Tuple[str, int, int], ...]  # (input_blocks|output_blocks, index, transformer index)


SD15_BLOCKS = BlockMap(
    rad_input=3, rau_output=8, pool_input=4, bicubic_output=7, rad_role="T1", pool_role="T2",
    window_blocks=(("input_blocks", 1, 0), ("input_blocks", 2, 0),
                   ("output_blocks", 9, 0), ("output_blocks", 10, 0), ("output_blocks", 11, 0)))

SDXL_BLOCKS = BlockMap(
    rad_input=6, rau_output=2, pool_input=4, bicubic_output=4, rad_role="T2", pool_role="T1",
    window_blocks=tuple((part, i, t) for part, idx in (("input_blocks", (4, 5)), ("output_blocks", (3, 4, 5)))
                        for i in idx for t in (0, 1)))

SDXL_TURBO_BLOCKS = dataclasses.replace(SDXL_BLOCKS, rad_input=None, rau_output=None)


def layout_of(unet) -> str:
    """'sd15' (SD1/SD2 layout: 12 input blocks, 3 Downsamples) or 'sdxl' (9 input blocks, 2 Downsamples),
    read from the module structure (class names, so ldm and sgm both work). Raises ValueError otherwise."""
    blocks = getattr(unet, "input_blocks", None)
    if blocks is None or not hasattr(unet, "output_blocks"):
        raise ValueError("HiDiffusion: not an ldm/sgm UNetModel (no input_blocks/output_blocks)")
    downs = [i for i, b in enumerate(blocks) if type(b[0]).__name__ == "Downsample"]

    def attention_at(index):
        return any(type(layer).__name__ == "SpatialTransformer" for layer in blocks[index])

    # the SDXL refiner has the SD1 block count but no attention at the top level: not supported
    if len(blocks) == 12 and downs == [3, 6, 9] and attention_at(1):
        return "sd15"
    if len(blocks) == 9 and downs == [3, 6] and attention_at(4) and not attention_at(1):
        return "sdxl"
    raise ValueError(f"HiDiffusion: unsupported UNet layout ({len(blocks)} input blocks, Downsamples at "
                     f"{downs}); supported: SD1.x/SD2.x and SDXL layouts")


def resolve_family(unet, override: Optional[str] = None) -> str:
    """The model family. Structure tells SD1/SD2 from SDXL; SDXL-Turbo (and SD2.1 vs SD1.5, which share
    every rule) needs ``override`` ('sd15', 'sd21', 'sdxl', 'sdxl_turbo'); an override that contradicts
    the structure raises ValueError."""
    layout = layout_of(unet)
    if override in (None, "", "auto"):
        return layout
    family = str(override).lower().replace("-", "_")
    if family not in FAMILIES:
        raise ValueError(f"HiDiffusion: unknown model family {override!r}; expected one of {FAMILIES}")
    expected = "sd15" if family in ("sd15", "sd21") else "sdxl"
    if expected != layout:
        raise ValueError(f"HiDiffusion: model family {family!r} does not match the UNet layout ({layout})")
    return family


def official_preset(family: str, latent_hw: Tuple[int, int], inpainting: bool = False) -> Tuple[float, float, bool]:
    """(T1 ratio, T2 ratio, aggressive) as the official code picks them for ``family`` at latent (H, W);
    the official turns the aggressive mode off for the SDXL inpainting model (``inpainting``)."""
    h, w = latent_hw
    if family in ("sd15", "sd21"):
        t1, t2 = OFFICIAL_RATIOS["sd15_1024" if (h < 256 or w < 256) else "sd15_2048"]
        return t1, t2, False
    if family == "sdxl":
        if h < 512 or w < 512:
            t1, t2 = OFFICIAL_RATIOS["sdxl_2048"]
            return t1, t2, not inpainting
        t1, t2 = OFFICIAL_RATIOS["sdxl_4096"]
        return t1, t2, False
    if family == "sdxl_turbo":
        t1, t2 = OFFICIAL_RATIOS["sdxl_turbo_1024"]
        return t1, t2, False
    raise ValueError(f"HiDiffusion: unknown model family {family!r}")


@dataclasses.dataclass(frozen=True)
class HiDiffusionConfig:
    """What to patch and when, for one sampling pass. Times are fractions of the steps actually run.

    ``shift_mode``: 'seeded' (shift from (seed, step), reproducible), 'official' (``torch.rand`` per block
    and denoiser call, like the official code's per-block draw in its one batched cond+uncond call) or 'fixed'
    (``fixed_shift`` in 0..3 everywhere; for tests). Every UNet call of one denoiser call shares the shifts."""

    family: str
    blocks: BlockMap
    rau_net: bool = True
    msw_msa: bool = True
    t1: float = 0.4
    t2: float = 0.0
    aggressive: bool = False
    aggressive_step_ratio: float = AGGRESSIVE_STEP / 50
    shift_mode: str = "seeded"
    fixed_shift: int = 0

    def __post_init__(self):
        for name in ("t1", "t2"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"HiDiffusion: {name} must be a fraction of the steps in [0, 1], got {value}")
        if self.shift_mode not in ("seeded", "official", "fixed"):
            raise ValueError(f"HiDiffusion: unknown shift_mode {self.shift_mode!r}")
        if self.fixed_shift not in (0, 1, 2, 3):
            raise ValueError(f"HiDiffusion: fixed_shift must be 0..3, got {self.fixed_shift}")
        if self.aggressive and self.family != "sdxl":
            raise ValueError("HiDiffusion: the aggressive schedule is an SDXL (base) feature")


def make_config(unet, latent_hw: Tuple[int, int], family: Optional[str] = None, *, rau_net: bool = True,
                msw_msa: bool = True, t1: Optional[float] = None, t2: Optional[float] = None,
                aggressive: Optional[bool] = None, shift_mode: str = "seeded",
                fixed_shift: int = 0) -> HiDiffusionConfig:
    """Config for one pass at latent size ``latent_hw`` (pixels // 8): the official preset of the family and
    size, with user overrides (``None`` keeps the preset value). A UNet with extra input channels (SDXL
    inpainting/edit models) gets the official inpainting default: not aggressive."""
    h, w = (int(v) for v in latent_hw)
    if h < 1 or w < 1:
        raise ValueError(f"HiDiffusion: bad latent size {latent_hw!r}")
    fam = resolve_family(unet, family)
    p1, p2, pagg = official_preset(fam, (h, w), inpainting=getattr(unet, "in_channels", 4) != 4)
    blocks = {"sd15": SD15_BLOCKS, "sd21": SD15_BLOCKS, "sdxl": SDXL_BLOCKS, "sdxl_turbo": SDXL_TURBO_BLOCKS}[fam]
    return HiDiffusionConfig(
        family=fam, blocks=blocks, rau_net=bool(rau_net), msw_msa=bool(msw_msa),
        t1=p1 if t1 is None else float(t1), t2=p2 if t2 is None else float(t2),
        aggressive=pagg if aggressive is None else bool(aggressive),
        shift_mode=shift_mode, fixed_shift=int(fixed_shift))
