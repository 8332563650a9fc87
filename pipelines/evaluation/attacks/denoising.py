"""What the optimising attacks share: images as the pipeline's latents, noised batches drawn from a seeded
generator, the denoiser's output under a conditioning, and the loop that trains a few learned token vectors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from PIL import Image

from ...errors import InputError
from ...families import SDXL, PromptEmbeddings, TextConditioner, denoiser_of, family_of_pipeline, time_ids
from ...latent_cache import crop_and_flip, resize_shorter_side, scaled_latents
from ...learned_tokens import LearnedTokens
from ...noising import training_noising
from ...objective import remain_loss


def conditioner_of(pipeline) -> TextConditioner:
    """The pipeline's own tokenizers and text encoders as a TextConditioner (a dropped T5 left out)."""
    family = family_of_pipeline(pipeline)
    slots = [s for s in family.text_encoders if getattr(pipeline, s.encoder, None) is not None]
    return TextConditioner(
        family, [getattr(pipeline, s.tokenizer) for s in slots], [getattr(pipeline, s.encoder) for s in slots]
    )


def learned_tokens_for(pipeline, count: int, name: str, seed: int) -> LearnedTokens:
    """``count`` new words for ``pipeline``'s text encoders, starting from random vectors drawn from ``seed``."""
    conditioner = conditioner_of(pipeline)
    return LearnedTokens(
        conditioner.model_family,
        conditioner.tokenizers,
        conditioner.text_encoders,
        count,
        name=name,
        generator=torch.Generator().manual_seed(seed),
    ).to(pipeline.device)


def resolution_of(pipeline, resolution: int | None) -> int:
    """``resolution``, else the pipeline's default image size."""
    if resolution:
        return resolution
    default = getattr(pipeline, "default_sample_size", None) or denoiser_of(pipeline).config.sample_size
    return default * pipeline.vae_scale_factor


@torch.no_grad()
def image_latents(pipeline, images: Sequence[Image.Image], resolution: int) -> torch.Tensor:
    """The VAE latents (distribution means, shifted and scaled as in training) of ``images`` centre-cropped to
    ``resolution``."""
    pixels = torch.stack(
        [crop_and_flip(resize_shorter_side(i.convert("RGB"), resolution), resolution, 0.5, 0.5, False) for i in images]
    )
    vae = pipeline.vae
    return scaled_latents(vae, vae.encode(pixels.to(pipeline.device, vae.dtype)).latent_dist.mean).float()


@dataclass
class NoisedBatch:
    """Latents with their noise, timesteps and noised version, and which images they are."""

    indices: torch.Tensor
    latents: torch.Tensor
    noise: torch.Tensor
    timesteps: torch.Tensor
    noisy: torch.Tensor


def training_noising_of(pipeline):
    """How the pipeline's model was trained to denoise (pipelines/noising.py), over a fresh copy of its
    schedule: DDPM's for SD and SDXL, flow matching's for SD3 and FLUX (their scripts' default σ scheme)."""
    scheduler = pipeline.scheduler
    return training_noising(family_of_pipeline(pipeline), type(scheduler).__name__, scheduler.config)


def draw_batch(latents: torch.Tensor, batch_size: int, noising, generator: torch.Generator) -> NoisedBatch:
    """``batch_size`` of the latents (with replacement), each with its own noise and timestep."""
    indices = torch.randint(len(latents), (batch_size,), generator=generator)
    chosen = latents[indices.to(latents.device)]
    noise = torch.randn(chosen.shape, generator=generator).to(chosen.device)
    timesteps = noising.draw_timesteps(batch_size, generator).to(chosen.device)
    return NoisedBatch(indices, chosen, noise, timesteps, noising.add_noise(chosen, noise, timesteps))


def denoiser_output(family, model, batch: NoisedBatch, embeds: PromptEmbeddings, resolution: int) -> torch.Tensor:
    """The denoiser's output on the noised batch under ``embeds`` (SDXL with centre-crop time ids)."""
    batch_time_ids = None
    if family.name == SDXL:
        batch_time_ids = (
            time_ids((resolution, resolution), (0, 0), resolution).repeat(len(batch.noisy), 1).to(batch.noisy.device)
        )
    return family.denoise(model, batch.noisy, batch.timesteps, embeds, batch_time_ids, model.dtype).float()


def denoising_loss(output: torch.Tensor, batch: NoisedBatch, noising) -> torch.Tensor:
    """The ordinary denoising loss: ‖target − output‖² in the model's own parameterisation."""
    target = noising.target(batch.latents, batch.noise, batch.timesteps)
    return remain_loss(output, target, noising.loss_weights(batch.timesteps))


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
    noising,
    seed: int,
) -> list[float]:
    """``tokens.fit`` for ``steps`` steps, each on a fresh noised batch of ``latents`` drawn from ``seed``;
    returns the loss of every step."""
    generator = torch.Generator().manual_seed(seed)

    def loss_at(_step: int) -> torch.Tensor:
        loss = loss_of(draw_batch(latents, batch_size, noising, generator), generator)
        check_finite(loss, "optimising", "--attack_learning_rate")
        return loss

    return tokens.fit(loss_at, steps, learning_rate)
