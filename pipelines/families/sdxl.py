"""SDXL: the penultimate hidden states of two CLIP encoders, concatenated; the second encoder's pooled
(projected) embedding and six micro-conditioning "time ids" go in through ``added_cond_kwargs``."""

from __future__ import annotations

import torch

from .base import PromptEmbeddings, TextEncoderSlot, token_ids
from .unet import UNetFamily


class StableDiffusionXL(UNetFamily):
    name = "sdxl"
    pipeline_class_name = "StableDiffusionXLPipeline"
    text_encoders = (
        TextEncoderSlot("tokenizer", "text_encoder", "CLIPTextModel"),
        TextEncoderSlot("tokenizer_2", "text_encoder_2", "CLIPTextModelWithProjection"),
    )
    card_tags = ("stable-diffusion-xl", "stable-diffusion-xl-diffusers")

    def embed(self, tokenizers, text_encoders, prompts, device) -> PromptEmbeddings:
        states = []
        for tokenizer, encoder in zip(tokenizers, text_encoders):
            output = encoder(token_ids(tokenizer, prompts, device), output_hidden_states=True)
            states.append(output.hidden_states[-2])
        # The last encoder's projection is the pooled embedding, as the SDXL pipeline uses.
        return PromptEmbeddings(torch.cat(states, dim=-1), output.text_embeds)


def time_ids(original_size: tuple[int, int], crop_top_left: tuple[int, int], resolution: int) -> torch.Tensor:
    """SDXL's micro-conditioning: (original h, w, crop top, left, target h, w)."""
    return torch.tensor([*original_size, *crop_top_left, resolution, resolution], dtype=torch.float32)
