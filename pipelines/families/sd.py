"""Stable Diffusion 1.x/2.x: one CLIP text encoder whose last hidden states condition the UNet."""

from __future__ import annotations

from .base import PromptEmbeddings, TextEncoderSlot, token_ids
from .unet import UNetFamily


class StableDiffusion(UNetFamily):
    name = "sd"
    pipeline_class_name = "StableDiffusionPipeline"
    text_encoders = (TextEncoderSlot("tokenizer", "text_encoder", "CLIPTextModel"),)
    card_tags = ("stable-diffusion", "stable-diffusion-diffusers")
    safety_checker = True

    def embed(self, tokenizers, text_encoders, prompts, device) -> PromptEmbeddings:
        ids = token_ids(tokenizers[0], prompts, device)
        return PromptEmbeddings(text_encoders[0](ids, return_dict=False)[0])
