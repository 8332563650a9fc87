"""Turning an image set into training inputs once: the VAE and text encoder are frozen, so latents and
prompt embeddings are computed a single time rather than every step.

An image whose preprocessing is deterministic keeps its VAE latent distribution (mean, std); each step
samples it with the sample's own noise, exactly as encoding afresh would. Only images under a random
augmentation (``--random_flip``, or random cropping of a non-square image) are encoded per step.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .data_sources import CaptionedImages, load_image
from .families import SDXL, PromptEmbeddings, TextConditioner, time_ids
from .randomness import SampleDraws


def resize_shorter_side(image: Image.Image, resolution: int) -> Image.Image:
    """Scales the image so that its shorter side equals ``resolution`` (bilinear, as diffusers' examples)."""
    width, height = image.size
    scale = resolution / min(width, height)
    size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
    return image if size == image.size else image.resize(size, Image.BILINEAR)


def crop_top_left(size: tuple[int, int], resolution: int, crop_x: float, crop_y: float) -> tuple[int, int]:
    """(top, left) of the ``resolution`` square at relative offsets (0.5 = centre) in an image of ``size`` (w, h)."""
    width, height = size
    return int(round(crop_y * (height - resolution))), int(round(crop_x * (width - resolution)))


def scaled_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """VAE latents as the denoiser sees them: (z − shift) · scale (SD3 and FLUX's VAEs have a shift)."""
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor


def crop_and_flip(image: Image.Image, resolution: int, crop_x: float, crop_y: float, flip: bool) -> torch.Tensor:
    """Crops a ``resolution`` square at the relative offsets (0.5 = centre), optionally mirrors it, and
    returns a [3, H, W] tensor scaled to [-1, 1]."""
    top, left = crop_top_left(image.size, resolution, crop_x, crop_y)
    image = image.crop((left, top, left + resolution, top + resolution))
    if flip:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1)
    return pixels / 127.5 - 1.0


class EncodedImageSet:
    """One data set (D_f or D_r) as cached prompt embeddings and latent distributions."""

    def __init__(
        self,
        data: CaptionedImages,
        vae,
        conditioner: TextConditioner,
        resolution: int,
        center_crop: bool,
        random_flip: bool,
        device: torch.device,
        batch_size: int = 8,
        empty_prompt_probability: float = 0.0,
    ):
        self.vae, self.resolution, self.random_flip, self.center_crop = vae, resolution, random_flip, center_crop
        self.empty_prompt_probability = empty_prompt_probability
        self.with_time_ids = conditioner.family == SDXL
        self.captions = list(data.captions)
        unique_captions = list(dict.fromkeys(self.captions + ([""] if empty_prompt_probability > 0 else [])))
        caption_ids = {caption: i for i, caption in enumerate(unique_captions)}
        self.caption_index = torch.tensor([caption_ids[c] for c in self.captions])
        self.empty_caption_id = caption_ids.get("")
        self.prompt_embeds = conditioner.encode(unique_captions, device)

        originals = [load_image(ref) for ref in data.images]
        self.original_sizes = [(image.size[1], image.size[0]) for image in originals]  # (h, w), as SDXL expects
        resized = [resize_shorter_side(image, resolution) for image in originals]
        self.resized_sizes = [image.size for image in resized]
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

    def batch(
        self, draws: SampleDraws, device: torch.device
    ) -> tuple[torch.Tensor, PromptEmbeddings, torch.Tensor | None]:
        """Scaled latents [B, C, h, w], prompt embeddings and (SDXL) time ids [B, 6] for the drawn samples."""
        means, stds, crops = [], [], []
        for k, item in enumerate(draws.item_indices):
            crop_x, crop_y, flip = draws.augmentation[k].tolist()
            if self.center_crop or item not in self.augmented:
                crop_x = crop_y = 0.5
            crops.append(crop_top_left(self.resized_sizes[item], self.resolution, crop_x, crop_y))
            if item in self.augmented:
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
        latents = scaled_latents(self.vae, mean + std * draws.latent_noise.to(device))
        caption_ids = self.caption_index[draws.item_indices]
        if draws.empty_prompt is not None:
            caption_ids = torch.where(draws.empty_prompt, self.empty_caption_id, caption_ids)
        embeds = self.prompt_embeds.select(caption_ids)
        batch_time_ids = None
        if self.with_time_ids:
            rows = [
                time_ids(self.original_sizes[i], crop, self.resolution) for i, crop in zip(draws.item_indices, crops)
            ]
            batch_time_ids = torch.stack(rows).to(device)
        return latents, embeds, batch_time_ids
