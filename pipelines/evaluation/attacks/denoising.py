"""What the optimising attacks share: images as the pipeline's latents, noised batches drawn from a seeded
generator, the denoiser's output under a conditioning, and the loop that trains a few learned token vectors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from PIL import Image

from ...errors import InputError
from ...latent_cache import crop_and_flip, resize_shorter_side
from ...learned_tokens import LearnedTokens
from ...model_family import SDXL, PromptEmbeddings, TextConditioner, family_of, time_ids, unet_conditioning
from ...objective import denoising_target


def conditioner_of(pipeline) -> TextConditioner:
    """The pipeline's own tokenizers and text encoders as a TextConditioner."""
    family = family_of(pipeline.components)
    if family == SDXL:
        return TextConditioner(
            family, [pipeline.tokenizer, pipeline.tokenizer_2], [pipeline.text_encoder, pipeline.text_encoder_2]
        )
    return TextConditioner(family, [pipeline.tokenizer], [pipeline.text_encoder])


def learned_tokens_for(pipeline, count: int, name: str, seed: int) -> LearnedTokens:
    """``count`` new words for ``pipeline``'s text encoders, starting from random vectors drawn from ``seed``."""
    conditioner = conditioner_of(pipeline)
    return LearnedTokens(
        conditioner.family,
        conditioner.tokenizers,
        conditioner.text_encoders,
        count,
        name=name,
        generator=torch.Generator().manual_seed(seed),
    ).to(pipeline.device)


def resolution_of(pipeline, resolution: int | None) -> int:
    """``resolution``, else the pipeline's default image size."""
    return resolution or pipeline.unet.config.sample_size * pipeline.vae_scale_factor


@torch.no_grad()
def image_latents(pipeline, images: Sequence[Image.Image], resolution: int) -> torch.Tensor:
    """The VAE latents (distribution means, scaled as in training) of ``images`` centre-cropped to ``resolution``."""
    pixels = torch.stack(
        [crop_and_flip(resize_shorter_side(i.convert("RGB"), resolution), resolution, 0.5, 0.5, False) for i in images]
    )
    vae = pipeline.vae
    latents = vae.encode(pixels.to(pipeline.device, vae.dtype)).latent_dist.mean
    return (latents * vae.config.scaling_factor).float()


@dataclass
class NoisedBatch:
    """Latents with their noise, timesteps and noised version, and which images they are."""

    indices: torch.Tensor
    latents: torch.Tensor
    noise: torch.Tensor
    timesteps: torch.Tensor
    noisy: torch.Tensor


def training_scheduler(pipeline):
    """The pipeline's noise schedule as a DDPM scheduler, which noises latents as training does."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(pipeline.scheduler.config)


def draw_batch(latents: torch.Tensor, batch_size: int, scheduler, generator: torch.Generator) -> NoisedBatch:
    """``batch_size`` of the latents (with replacement), each with its own noise and timestep."""
    indices = torch.randint(len(latents), (batch_size,), generator=generator)
    chosen = latents[indices.to(latents.device)]
    noise = torch.randn(chosen.shape, generator=generator).to(chosen.device)
    timesteps = torch.randint(scheduler.config.num_train_timesteps, (batch_size,), generator=generator).to(
        chosen.device
    )
    return NoisedBatch(indices, chosen, noise, timesteps, scheduler.add_noise(chosen, noise, timesteps))


def denoiser_output(unet, batch: NoisedBatch, embeds: PromptEmbeddings, resolution: int) -> torch.Tensor:
    """The UNet's output on the noised batch under ``embeds`` (SDXL with centre-crop time ids)."""
    batch_time_ids = None
    if embeds.pooled is not None:
        batch_time_ids = (
            time_ids((resolution, resolution), (0, 0), resolution).repeat(len(batch.noisy), 1).to(batch.noisy.device)
        )
    dtype = unet.dtype
    conditioning = unet_conditioning(embeds, batch_time_ids, dtype)
    return unet(batch.noisy.to(dtype), batch.timesteps, **conditioning).sample.float()


def denoising_loss(output: torch.Tensor, batch: NoisedBatch, scheduler) -> torch.Tensor:
    """The ordinary denoising loss: ‖target − output‖² with the schedule's own prediction type."""
    target = denoising_target(batch.latents, batch.noise, batch.timesteps, scheduler.config.prediction_type, scheduler)
    return torch.nn.functional.mse_loss(output, target)


def check_finite(loss: torch.Tensor, attack: str, option: str) -> None:
    """Stops an attack whose loss is no longer finite: its images would be noise, and a 0 % success from noise
    would read as robustness."""
    if not torch.isfinite(loss):
        raise InputError(f"the {attack} attack's loss became {float(loss)}; lower {option}")


def train_tokens(
    tokens: LearnedTokens,
    loss_of: Callable[[NoisedBatch, torch.Generator], torch.Tensor],
    latents: torch.Tensor,
    steps: int,
    learning_rate: float,
    batch_size: int,
    scheduler,
    seed: int,
) -> list[float]:
    """``tokens.fit`` for ``steps`` steps, each on a fresh noised batch of ``latents`` drawn from ``seed``;
    returns the loss of every step."""
    generator = torch.Generator().manual_seed(seed)

    def loss_at(_step: int) -> torch.Tensor:
        loss = loss_of(draw_batch(latents, batch_size, scheduler, generator), generator)
        check_finite(loss, "optimising", "--attack_learning_rate")
        return loss

    return tokens.fit(loss_at, steps, learning_rate)
