"""Stable Diffusion 3 / 3.5 (MMDiT): two CLIP encoders and T5.

As ``StableDiffusion3Pipeline.encode_prompt`` computes it: each CLIP encoder's penultimate hidden states,
concatenated along the width and zero-padded (``F.pad``) to T5's width, then T5's last hidden states appended
along the sequence; the pooled embedding is both CLIP projections side by side. Without T5 (``--t5 drop``,
as the pipeline allows with ``text_encoder_3=None``) its part of the sequence is zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import PromptEmbeddings, TextEncoderSlot, token_ids
from .transformer import FlowMatchingTransformer, joint_attention_parts

T5_TOKENS = 256  # the pipeline's default max_sequence_length


class StableDiffusion3(FlowMatchingTransformer):
    name = "sd3"
    pipeline_class_name = "StableDiffusion3Pipeline"
    denoiser_class_name = "SD3Transformer2DModel"
    text_encoders = (
        TextEncoderSlot("tokenizer", "text_encoder", "CLIPTextModelWithProjection"),
        TextEncoderSlot("tokenizer_2", "text_encoder_2", "CLIPTextModelWithProjection"),
        TextEncoderSlot("tokenizer_3", "text_encoder_3", "T5EncoderModel", "T5TokenizerFast"),
    )
    card_tags = ("sd3", "sd3-diffusers", "stable-diffusion-3")
    parts = joint_attention_parts()
    # diffusers' train_dreambooth_lora_sd3.py: both streams' attention projections.
    lora_target_modules = (
        "attn.add_k_proj",
        "attn.add_q_proj",
        "attn.add_v_proj",
        "attn.to_add_out",
        "attn.to_k",
        "attn.to_out.0",
        "attn.to_q",
        "attn.to_v",
    )
    default_weighting_scheme = "logit_normal"  # train_dreambooth_lora_sd3.py's default
    default_precondition_outputs = True  # its --precondition_outputs 1
    default_guidance_scale = 7.0  # StableDiffusion3Pipeline's

    def __init__(self, joint_attention_dim: int = 4096):
        """``joint_attention_dim``: the transformer's text width, the zeros' width when T5 is dropped."""
        self.joint_attention_dim = joint_attention_dim

    def latent_multiple(self, denoiser_config: dict) -> int:
        return denoiser_config.get("patch_size", 2)

    def embed(self, tokenizers, text_encoders, prompts, device) -> PromptEmbeddings:
        clip_states, pooled = [], []
        for tokenizer, encoder in zip(tokenizers[:2], text_encoders[:2]):
            output = encoder(token_ids(tokenizer, prompts, device), output_hidden_states=True)
            clip_states.append(output.hidden_states[-2])
            pooled.append(output.text_embeds)
        clip = torch.cat(clip_states, dim=-1)
        if len(text_encoders) > 2:
            t5 = text_encoders[2](token_ids(tokenizers[2], prompts, device, T5_TOKENS))[0]
        else:
            t5 = torch.zeros(len(prompts), T5_TOKENS, self.joint_attention_dim, device=clip.device, dtype=clip.dtype)
        clip = F.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
        return PromptEmbeddings(torch.cat([clip, t5.to(clip.dtype)], dim=-2), torch.cat(pooled, dim=-1))

    def denoise(self, model, noisy_latents, timesteps, embeddings, time_ids, dtype) -> torch.Tensor:
        return model(
            hidden_states=noisy_latents.to(dtype),
            timestep=timesteps,  # σ·1000, the scheduler's timesteps
            encoder_hidden_states=embeddings.hidden.to(dtype),
            pooled_projections=embeddings.pooled.to(dtype),
            return_dict=False,
        )[0]
