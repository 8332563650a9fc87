"""Turning an image set into training inputs once: the VAE and text encoder are frozen, so latents and
prompt embeddings are computed a single time rather than every step.

An image whose preprocessing is deterministic keeps its VAE latent distribution (mean, std); each step
samples it with the sample's own noise, exactly as encoding afresh would. Only images under a random
augmentation (``--random_flip``, or random cropping of a non-square image) are encoded per step.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

from .data_sources import CaptionedImages, load_image
from .randomness import SampleDraws


def resize_shorter_side(image: Image.Image, resolution: int) -> Image.Image:
    """Scales the image so that its shorter side equals ``resolution`` (bilinear, as diffusers' examples)."""
    width, height = image.size
    scale = resolution / min(width, height)
    size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
    return image if size == image.size else image.resize(size, Image.BILINEAR)


def crop_and_flip(image: Image.Image, resolution: int, crop_x: float, crop_y: float, flip: bool) -> torch.Tensor:
    """Crops a ``resolution`` square at the relative offsets (0.5 = centre), optionally mirrors it, and
    returns a [3, H, W] tensor scaled to [-1, 1]."""
    width, height = image.size
    left = int(round(crop_x * (width - resolution)))
    top = int(round(crop_y * (height - resolution)))
    image = image.crop((left, top, left + resolution, top + resolution))
    if flip:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1)
    return pixels / 127.5 - 1.0


def encode_prompts(prompts: Sequence[str], tokenizer, text_encoder, device, batch_size: int = 32) -> torch.Tensor:
    """Text-encoder hidden states [N, L, D] for the prompts, as the Stable Diffusion pipeline conditions."""
    chunks = []
    for start in range(0, len(prompts), batch_size):
        tokens = tokenizer(
            list(prompts[start : start + batch_size]),
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        with torch.no_grad():
            chunks.append(text_encoder(tokens.input_ids.to(device), return_dict=False)[0])
    return torch.cat(chunks)


class EncodedImageSet:
    """One data set (D_f or D_r) as cached prompt embeddings and latent distributions."""

    def __init__(
        self,
        data: CaptionedImages,
        vae,
        tokenizer,
        text_encoder,
        resolution: int,
        center_crop: bool,
        random_flip: bool,
        device: torch.device,
        batch_size: int = 8,
    ):
        self.vae, self.resolution, self.random_flip, self.center_crop = vae, resolution, random_flip, center_crop
        self.captions = list(data.captions)
        unique_captions = list(dict.fromkeys(self.captions))
        caption_ids = {caption: i for i, caption in enumerate(unique_captions)}
        self.caption_index = torch.tensor([caption_ids[c] for c in self.captions])
        self.prompt_embeds = encode_prompts(unique_captions, tokenizer, text_encoder, device)

        resized = [resize_shorter_side(load_image(ref), resolution) for ref in data.images]
        self.augmented: dict[int, Image.Image] = {
            i: image
            for i, image in enumerate(resized)
            if random_flip or (not center_crop and image.size[0] != image.size[1])
        }
        static = [i for i in range(len(resized)) if i not in self.augmented]
        self.latent_mean: dict[int, torch.Tensor] = {}
        self.latent_std: dict[int, torch.Tensor] = {}
        for start in range(0, len(static), batch_size):
            indices = static[start : start + batch_size]
            pixels = torch.stack([crop_and_flip(resized[i], resolution, 0.5, 0.5, False) for i in indices])
            mean, std = self._latent_distribution(pixels.to(device))
            for k, i in enumerate(indices):
                self.latent_mean[i], self.latent_std[i] = mean[k], std[k]
        self.latent_shape = self._latent_shape(device)

    def __len__(self) -> int:
        return len(self.captions)

    def _latent_distribution(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            distribution = self.vae.encode(pixels.to(self.vae.dtype)).latent_dist
        return distribution.mean.float(), distribution.std.float()

    def _latent_shape(self, device) -> tuple[int, ...]:
        if self.latent_mean:
            return tuple(next(iter(self.latent_mean.values())).shape)
        probe = torch.zeros(1, 3, self.resolution, self.resolution, device=device)
        return tuple(self._latent_distribution(probe)[0].shape[1:])

    def _scale(self, latents: torch.Tensor) -> torch.Tensor:
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        return (latents - shift) * self.vae.config.scaling_factor

    def batch(self, draws: SampleDraws, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled latents [B, C, h, w] and prompt embeddings [B, L, D] for the drawn samples."""
        means, stds = [], []
        for k, item in enumerate(draws.item_indices):
            if item in self.augmented:
                crop_x, crop_y, flip = draws.augmentation[k].tolist()
                if self.center_crop:
                    crop_x = crop_y = 0.5
                pixels = crop_and_flip(
                    self.augmented[item], self.resolution, crop_x, crop_y, self.random_flip and flip < 0.5
                )
                mean, std = self._latent_distribution(pixels[None].to(device))
                means.append(mean[0])
                stds.append(std[0])
            else:
                means.append(self.latent_mean[item])
                stds.append(self.latent_std[item])
        mean, std = torch.stack(means), torch.stack(stds)
        latents = self._scale(mean + std * draws.latent_noise.to(device))
        embeds = self.prompt_embeds[self.caption_index[draws.item_indices]]
        return latents, embeds
