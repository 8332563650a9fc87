"""The one seam between Stable Diffusion 1.x/2.x and SDXL: which pipeline class, which text encoders, and
how a prompt conditions the UNet. Everything else (objective, λ rules, data, training loop) is shared.

SD conditions on the text encoder's last hidden states. SDXL concatenates the penultimate hidden states of
two encoders, and adds the second encoder's pooled embedding and six "time ids" (original size, crop
top-left, target size) through ``added_cond_kwargs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

SD = "sd"
SDXL = "sdxl"
PIPELINE_CLASS_NAMES = {SD: "StableDiffusionPipeline", SDXL: "StableDiffusionXLPipeline"}
# What the family pipeline's check_inputs requires of height and width.
RESOLUTION_MULTIPLE = {SD: 8, SDXL: 8}


def family_of(model_index: dict) -> str:
    """SDXL when the pipeline has a second text encoder, else SD 1.x/2.x."""
    return SDXL if "text_encoder_2" in model_index else SD


def pipeline_class(family: str):
    """The diffusers pipeline class of a family."""
    import diffusers

    return getattr(diffusers, PIPELINE_CLASS_NAMES[family])


@dataclass
class PromptEmbeddings:
    """What a batch of prompts conditions the UNet with."""

    hidden: torch.Tensor  # [N, L, D]
    pooled: torch.Tensor | None = None  # [N, P], SDXL only

    def select(self, indices) -> "PromptEmbeddings":
        """The rows at ``indices``."""
        return PromptEmbeddings(self.hidden[indices], None if self.pooled is None else self.pooled[indices])

    def expand(self, count: int) -> "PromptEmbeddings":
        """One prompt's embeddings repeated ``count`` times."""
        return PromptEmbeddings(
            self.hidden.expand(count, -1, -1), None if self.pooled is None else self.pooled.expand(count, -1)
        )


class TextConditioner:
    """Encodes prompts with the family's frozen text encoder(s)."""

    def __init__(self, family: str, tokenizers: Sequence, text_encoders: Sequence):
        self.family, self.tokenizers, self.text_encoders = family, list(tokenizers), list(text_encoders)

    def _tokens(self, tokenizer, prompts: Sequence[str], device) -> torch.Tensor:
        return tokenizer(
            list(prompts),
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(device)

    def embed(self, prompts: Sequence[str], device) -> PromptEmbeddings:
        """Embeddings of ``prompts`` in one batch, differentiable (learned_tokens trains through this)."""
        if self.family == SD:
            tokenizer, encoder = self.tokenizers[0], self.text_encoders[0]
            return PromptEmbeddings(encoder(self._tokens(tokenizer, prompts, device), return_dict=False)[0])
        states = []
        for tokenizer, encoder in zip(self.tokenizers, self.text_encoders):
            output = encoder(self._tokens(tokenizer, prompts, device), output_hidden_states=True)
            states.append(output.hidden_states[-2])
        # The last encoder's projection is the pooled embedding, as the SDXL pipeline uses.
        return PromptEmbeddings(torch.cat(states, dim=-1), output.text_embeds)

    @torch.no_grad()
    def encode(self, prompts: Sequence[str], device, batch_size: int = 32) -> PromptEmbeddings:
        """Embeddings of ``prompts``, computed in batches."""
        chunks = [
            self.embed(prompts[start : start + batch_size], device) for start in range(0, len(prompts), batch_size)
        ]
        pooled = [c.pooled for c in chunks]
        return PromptEmbeddings(
            torch.cat([c.hidden for c in chunks]), None if pooled[0] is None else torch.cat(pooled)
        )


def time_ids(original_size: tuple[int, int], crop_top_left: tuple[int, int], resolution: int) -> torch.Tensor:
    """SDXL's micro-conditioning: (original h, w, crop top, left, target h, w)."""
    return torch.tensor([*original_size, *crop_top_left, resolution, resolution], dtype=torch.float32)


def unet_conditioning(embeddings: PromptEmbeddings, batch_time_ids: torch.Tensor | None, dtype: torch.dtype) -> dict:
    """The keyword arguments that condition a UNet call on the embeddings (and, for SDXL, the time ids)."""
    kwargs = {"encoder_hidden_states": embeddings.hidden.to(dtype)}
    if embeddings.pooled is not None:
        kwargs["added_cond_kwargs"] = {
            "text_embeds": embeddings.pooled.to(dtype),
            "time_ids": batch_time_ids.to(dtype),
        }
    return kwargs
