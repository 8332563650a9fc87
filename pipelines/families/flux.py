"""FLUX.1: CLIP's pooled embedding and T5's hidden states; a transformer on 2×2-packed latents with rotary
position ids for the image (row, column) and the text (zeros).

FLUX.1 [dev] is guidance-distilled: the guidance value goes in through an embedding and there is no
classifier-free guidance, so the empty prompt has no role (``--proportion_empty_prompts`` must be 0).
FLUX.1 [schnell] has no guidance embedding (``guidance_embeds`` false in its config).
"""

from __future__ import annotations

import torch

from .base import PromptEmbeddings, TextEncoderSlot, token_ids
from .transformer import FlowMatchingTransformer, joint_attention_parts

T5_TOKENS = 512  # FluxPipeline's default max_sequence_length
DEFAULT_TRAINING_GUIDANCE = 3.5  # train_dreambooth_lora_flux.py's --guidance_scale
# In the single-stream blocks the text and image tokens share one set of projections; those blocks are where
# most of FLUX's text-image attention happens (38 of 57 blocks in FLUX.1), so xattn trains their attention too.
SINGLE_STREAM_ATTENTION = r"^single_transformer_blocks\.\d+\.attn\."


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] latents as FLUX's token sequence [B, (h/2)(w/2), 4C] of 2×2 patches."""
    b, c, h, w = latents.shape
    patches = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The inverse of ``pack_latents`` for latents of ``height`` × ``width``."""
    b, _, channels = tokens.shape
    c = channels // 4
    patches = tokens.view(b, height // 2, width // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return patches.reshape(b, c, height, width)


def image_position_ids(height: int, width: int, device, dtype) -> torch.Tensor:
    """[(h/2)(w/2), 3] position ids of the packed latent tokens: (0, row, column)."""
    rows = torch.arange(height // 2, device=device).repeat_interleave(width // 2)
    columns = torch.arange(width // 2, device=device).repeat(height // 2)
    return torch.stack([torch.zeros_like(rows), rows, columns], dim=-1).to(dtype)


class Flux(FlowMatchingTransformer):
    name = "flux"
    pipeline_class_name = "FluxPipeline"
    denoiser_class_name = "FluxTransformer2DModel"
    text_encoders = (
        TextEncoderSlot("tokenizer", "text_encoder", "CLIPTextModel"),
        TextEncoderSlot("tokenizer_2", "text_encoder_2", "T5EncoderModel", "T5TokenizerFast"),
    )
    card_tags = ("flux", "flux-diffusers")
    parts = joint_attention_parts(SINGLE_STREAM_ATTENTION)
    # diffusers' train_dreambooth_lora_flux.py: attention of both streams and the joint blocks' feed-forwards.
    lora_target_modules = (
        "attn.to_k",
        "attn.to_q",
        "attn.to_v",
        "attn.to_out.0",
        "attn.add_k_proj",
        "attn.add_q_proj",
        "attn.add_v_proj",
        "attn.to_add_out",
        "ff.net.0.proj",
        "ff.net.2",
        "ff_context.net.0.proj",
        "ff_context.net.2",
    )
    default_weighting_scheme = "none"  # train_dreambooth_lora_flux.py's default
    default_guidance_scale = 3.5  # FluxPipeline's (the distilled guidance; schnell ignores it)
    classifier_free_guidance = False

    def __init__(self, guidance_scale: float | None = DEFAULT_TRAINING_GUIDANCE):
        """``guidance_scale``: the value the guidance embedding takes in training; None for a model without one."""
        self.guidance_scale = guidance_scale

    def latent_multiple(self, denoiser_config: dict) -> int:
        return 2  # 2×2 packing

    def embed(self, tokenizers, text_encoders, prompts, device) -> PromptEmbeddings:
        pooled = text_encoders[0](token_ids(tokenizers[0], prompts, device), output_hidden_states=False).pooler_output
        t5 = text_encoders[1](token_ids(tokenizers[1], prompts, device, T5_TOKENS), output_hidden_states=False)[0]
        return PromptEmbeddings(t5, pooled)

    def denoise(self, model, noisy_latents, timesteps, embeddings, time_ids, dtype) -> torch.Tensor:
        batch, _, height, width = noisy_latents.shape
        device = noisy_latents.device
        guidance = None
        if self.guidance_scale is not None:
            guidance = torch.full((batch,), float(self.guidance_scale), device=device, dtype=torch.float32)
        output = model(
            hidden_states=pack_latents(noisy_latents).to(dtype),
            timestep=timesteps / 1000,  # the transformer takes σ
            guidance=guidance,
            pooled_projections=embeddings.pooled.to(dtype),
            encoder_hidden_states=embeddings.hidden.to(dtype),
            txt_ids=torch.zeros(embeddings.hidden.shape[1], 3, device=device, dtype=dtype),
            img_ids=image_position_ids(height, width, device, dtype),
            return_dict=False,
        )[0]
        return unpack_latents(output, height, width)
