"""The interface every model family implements, and the prompt embeddings that flow through it.

A family says which text encoders a pipeline has and how a prompt becomes conditioning, what its denoiser
(a UNet or a transformer) takes, which pipeline class generates and saves it, which modules ``--train_method``
and LoRA select, and which training-noise convention it was trained with. The loop, the objective, the data,
checkpoints, the card, the loader and the export are shared and only ask the family.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import torch

from ..options import DEFAULT_GENERATION_SCHEDULER, DEFAULT_LORA_TARGET_MODULES


@dataclass
class PromptEmbeddings:
    """What a batch of prompts conditions the denoiser with."""

    hidden: torch.Tensor  # [N, L, D]: the token sequence the denoiser attends to
    pooled: torch.Tensor | None = None  # [N, P]: SDXL, SD3 and FLUX's pooled text embedding

    def select(self, indices) -> "PromptEmbeddings":
        """The rows at ``indices``."""
        return PromptEmbeddings(self.hidden[indices], None if self.pooled is None else self.pooled[indices])

    def expand(self, count: int) -> "PromptEmbeddings":
        """One prompt's embeddings repeated ``count`` times."""
        return PromptEmbeddings(
            self.hidden.expand(count, -1, -1), None if self.pooled is None else self.pooled.expand(count, -1)
        )


def concatenated(embeddings: Sequence[PromptEmbeddings]) -> PromptEmbeddings:
    """The embeddings of several batches as one, in order."""
    pooled = [e.pooled for e in embeddings]
    return PromptEmbeddings(
        torch.cat([e.hidden for e in embeddings]), None if pooled[0] is None else torch.cat(pooled)
    )


def token_ids(tokenizer, prompts: Sequence[str], device, max_length: int | None = None) -> torch.Tensor:
    """``prompts`` padded (and cut) to ``max_length`` tokens, by default the tokenizer's own maximum."""
    return tokenizer(
        list(prompts),
        padding="max_length",
        max_length=max_length or tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids.to(device)


@dataclass(frozen=True)
class TextEncoderSlot:
    """Where one text encoder lives in the pipeline folder, and its transformers class."""

    tokenizer: str  # component name: tokenizer, tokenizer_2, tokenizer_3
    encoder: str  # text_encoder, text_encoder_2, text_encoder_3
    encoder_class: str  # CLIPTextModel, CLIPTextModelWithProjection, T5EncoderModel
    tokenizer_class: str = "CLIPTokenizer"

    @property
    def is_t5(self) -> bool:
        """Whether this is SD3's or FLUX's T5 (what ``--t5`` places)."""
        return self.encoder_class == "T5EncoderModel"


@dataclass(frozen=True)
class ModuleParts:
    """The denoiser's parts that ``--train_method`` names, as regular expressions over parameter and module
    names (a name belongs to a part when one expression matches anywhere in it)."""

    cross_attention: tuple[str, ...]  # where text meets the image: xattn trains these, noxattn keeps them
    self_attention: tuple[str, ...]  # the image attending to itself: selfattn
    time_and_output: tuple[str, ...]  # the time embedding and the output layers: noxattn and notime keep them

    def contains(self, part: tuple[str, ...], name: str) -> bool:
        """Whether ``name`` belongs to ``part``."""
        return any(re.search(pattern, name) for pattern in part)


def piece(*names: str) -> str:
    """A pattern that matches any of ``names`` as a whole dotted piece of a module name."""
    return r"(^|\.)(" + "|".join(re.escape(n) for n in names) + r")(\.|$)"


class ModelFamily:
    """What differs between Stable Diffusion 1.x/2.x, SDXL, SD3 and FLUX. Subclasses fill in the facts and
    override the conditioning; an instance holds only the run's settings that the conditioning needs (FLUX's
    guidance value, SD3's width when T5 is dropped)."""

    name: str
    pipeline_class_name: str
    denoiser: str = "unet"  # the pipeline component that is trained
    denoiser_class_name: str = "UNet2DConditionModel"
    text_encoders: tuple[TextEncoderSlot, ...] = ()
    resolution_multiple: int = 8  # of the image size, beyond the VAE's factor (the pipeline's check_inputs)
    card_tags: tuple[str, ...] = ()
    parts: ModuleParts
    lora_target_modules: tuple[str, ...] = DEFAULT_LORA_TARGET_MODULES
    flow_matching: bool = False  # x_t = (1 − σ)x₀ + σε with a velocity target, else DDPM's ε/v schedule
    classifier_free_guidance: bool = True  # whether the empty prompt means something (prompt dropout)
    default_weighting_scheme: str | None = None  # flow matching: diffusers' training scripts' default
    default_precondition_outputs: bool = False  # flow matching: regress x̂₀ (the SD3 scripts' default)
    safety_checker: bool = False  # the pipeline takes safety_checker/feature_extractor arguments
    # Generation defaults where the flags leave them open: the pipeline's own guidance scale, and the sampler.
    default_guidance_scale: float = 7.5
    default_generation_scheduler: str = DEFAULT_GENERATION_SCHEDULER

    @classmethod
    def pipeline_class(cls):
        """The diffusers pipeline class that generates with and saves this family."""
        import diffusers

        return getattr(diffusers, cls.pipeline_class_name)

    @classmethod
    def denoiser_class(cls):
        """The diffusers model class of the trained denoiser."""
        import diffusers

        return getattr(diffusers, cls.denoiser_class_name)

    def latent_multiple(self, denoiser_config: dict) -> int:
        """What the latent height and width must be a multiple of (a transformer's patch size)."""
        return 1

    def embed(self, tokenizers: Sequence, text_encoders: Sequence, prompts: Sequence[str], device) -> PromptEmbeddings:
        """The conditioning of ``prompts``, differentiable through the encoders, as the family's pipeline
        computes it."""
        raise NotImplementedError

    def denoise(
        self,
        model,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        embeddings: PromptEmbeddings,
        time_ids: torch.Tensor | None,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        """The denoiser's output on ``noisy_latents`` [B, C, h, w], in the same layout."""
        raise NotImplementedError
