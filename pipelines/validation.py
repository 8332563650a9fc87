"""Validation images: the same prompts and seeds before, during and after training, a before/after grid
on disk, and the images logged to the trackers."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from .randomness import derive_seed

VALIDATION_GRID_FILE = "validation_grid.png"
_VALIDATION_STREAM = 4


def generate_validation_images(
    pipeline,
    prompts: Sequence[str],
    num_images: int,
    seed: int,
    num_inference_steps: int,
    guidance_scale: float,
    resolution: int,
    description: str = "validation images",
) -> list[list[Image.Image]]:
    """``num_images`` images per prompt; image j of prompt i always uses the same seed, so runs compare.
    A progress bar (one tick per prompt) is labelled ``description``."""
    from tqdm.auto import tqdm

    pipeline.set_progress_bar_config(disable=True)
    images = []
    for i, prompt in enumerate(tqdm(prompts, desc=description, leave=False)):
        generators = [
            torch.Generator(device=pipeline.device).manual_seed(derive_seed(seed, _VALIDATION_STREAM, i, j))
            for j in range(num_images)
        ]
        with torch.no_grad():
            result = pipeline(
                [prompt] * num_images,
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                height=resolution,
                width=resolution,
                generator=generators,
            )
        images.append(result.images)
    return images


def before_after_grid(before: list[list[Image.Image]], after: list[list[Image.Image]]) -> Image.Image:
    """One row per prompt: its images before training, then the same seeds after."""
    from diffusers.utils import make_image_grid

    rows = [image for row_before, row_after in zip(before, after) for image in (*row_before, *row_after)]
    return make_image_grid(rows, rows=len(before), cols=len(before[0]) + len(after[0]))


VALIDATION_IMAGES_DIR = "validation"


def widget_image_name(prompt_index: int, phase: str) -> str:
    """Where the first before/after image of a validation prompt is saved (the card's widget shows them)."""
    return f"{VALIDATION_IMAGES_DIR}/{phase}_{prompt_index}.png"


def save_validation_grid(before, after, output_dir: str) -> Image.Image:
    """Writes ``validation_grid.png`` and the first before/after image of each prompt (``validation/``);
    returns the grid."""
    grid = before_after_grid(before, after)
    grid.save(os.path.join(output_dir, VALIDATION_GRID_FILE))
    os.makedirs(os.path.join(output_dir, VALIDATION_IMAGES_DIR), exist_ok=True)
    for index, (row_before, row_after) in enumerate(zip(before, after)):
        row_before[0].save(os.path.join(output_dir, widget_image_name(index, "before")))
        row_after[0].save(os.path.join(output_dir, widget_image_name(index, "after")))
    return grid


def log_validation_images(
    accelerator, images: list[list[Image.Image]], prompts: Sequence[str], phase: str, step: int
) -> None:
    """Sends the images to every tracker that takes images (tensorboard, wandb)."""
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            for prompt, row in zip(prompts, images):
                stacked = np.stack([np.asarray(image) for image in row])
                tracker.writer.add_images(f"{phase}/{prompt}", stacked, step, dataformats="NHWC")
        elif tracker.name == "wandb":
            import wandb

            tracker.log(
                {phase: [wandb.Image(image, caption=prompt) for prompt, row in zip(prompts, images) for image in row]},
                step=step,
            )
