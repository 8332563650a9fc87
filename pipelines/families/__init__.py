"""Model families: Stable Diffusion 1.x/2.x (``sd``), SDXL (``sdxl``), SD3/3.5 (``sd3``) and FLUX.1 (``flux``),
one module each behind the interface of base.py. The family of a pipeline is read from its
``model_index.json`` (or a loaded pipeline's components)."""

from __future__ import annotations

from .base import ModelFamily, ModuleParts, PromptEmbeddings, concatenated
from .conditioner import TextConditioner
from .flux import DEFAULT_TRAINING_GUIDANCE, Flux
from .sd import StableDiffusion
from .sd3 import StableDiffusion3
from .sdxl import StableDiffusionXL, time_ids

SD, SDXL, SD3, FLUX = "sd", "sdxl", "sd3", "flux"
FAMILIES = {f.name: f for f in (StableDiffusion, StableDiffusionXL, StableDiffusion3, Flux)}
PIPELINE_CLASS_NAMES = {name: family.pipeline_class_name for name, family in FAMILIES.items()}

__all__ = [
    "FAMILIES",
    "FLUX",
    "PIPELINE_CLASS_NAMES",
    "SD",
    "SD3",
    "SDXL",
    "ModelFamily",
    "ModuleParts",
    "PromptEmbeddings",
    "TextConditioner",
    "concatenated",
    "denoiser_of",
    "family_for",
    "family_of",
    "family_of_pipeline",
    "get_family",
    "pipeline_class",
    "time_ids",
]


def family_of(model_index: dict) -> str:
    """The family of a pipeline from its ``model_index.json`` (or ``pipeline.components``): a transformer
    with a third text encoder is SD3, one with two is FLUX; a UNet with a second encoder is SDXL, else SD."""
    if "transformer" in model_index:
        return SD3 if "text_encoder_3" in model_index else FLUX
    return SDXL if "text_encoder_2" in model_index else SD


def get_family(name: str, **settings) -> ModelFamily:
    """The family called ``name``, with the run's ``settings`` (FLUX: guidance_scale; SD3: joint_attention_dim)."""
    return FAMILIES[name](**settings)


def family_for(name: str, denoiser_config, guidance_scale: float | None = None) -> ModelFamily:
    """The family ``name`` with the settings its conditioning needs, read from the denoiser's config: FLUX's
    guidance value (``guidance_scale``, by default diffusers' training value; none for a model without a
    guidance embedding, FLUX.1 [schnell]) and SD3's text width."""
    if name == FLUX:
        if not denoiser_config.get("guidance_embeds"):
            return Flux(None)
        return Flux(DEFAULT_TRAINING_GUIDANCE if guidance_scale is None else guidance_scale)
    if name == SD3:
        return StableDiffusion3(denoiser_config.get("joint_attention_dim", 4096))
    return get_family(name)


def family_of_pipeline(pipeline) -> ModelFamily:
    """The family of a loaded pipeline, with the settings of its denoiser."""
    name = family_of(pipeline.components)
    return family_for(name, getattr(pipeline, FAMILIES[name].denoiser).config)


def denoiser_of(pipeline):
    """The pipeline's UNet or transformer."""
    return getattr(pipeline, FAMILIES[family_of(pipeline.components)].denoiser)


def pipeline_class(family: str):
    """The diffusers pipeline class of a family."""
    return FAMILIES[family].pipeline_class()
