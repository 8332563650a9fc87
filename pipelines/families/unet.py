"""What Stable Diffusion 1.x/2.x and SDXL share: a UNet with cross-attention, trained on DDPM's schedule."""

from __future__ import annotations

import torch

from .base import ModelFamily, ModuleParts, PromptEmbeddings, piece

# The official code's train_method names on diffusers' UNet: ``attn2`` is cross-attention, ``attn1``
# self-attention; CompVis' ``time_embed`` is ``time_embedding`` and its ``out.`` block ``conv_norm_out``/``conv_out``.
UNET_PARTS = ModuleParts(
    cross_attention=(piece("attn2"),),
    self_attention=(piece("attn1"),),
    time_and_output=(piece("time_embedding", "conv_norm_out", "conv_out"),),
)


class UNetFamily(ModelFamily):
    """A UNet2DConditionModel conditioned through ``encoder_hidden_states`` (and SDXL's ``added_cond_kwargs``)."""

    parts = UNET_PARTS

    def denoise(self, model, noisy_latents, timesteps, embeddings: PromptEmbeddings, time_ids, dtype) -> torch.Tensor:
        kwargs = {"encoder_hidden_states": embeddings.hidden.to(dtype)}
        if embeddings.pooled is not None:
            kwargs["added_cond_kwargs"] = {"text_embeds": embeddings.pooled.to(dtype), "time_ids": time_ids.to(dtype)}
        return model(noisy_latents.to(dtype), timesteps, **kwargs, return_dict=False)[0]
