"""The images of an evaluation: every model draws image j of prompt i from the same seed, in batches; they
are saved in the imagefolder layout (with each image's prompt and seed) and shown side by side in grids."""

from __future__ import annotations

import json
import os
from typing import Sequence

from PIL import Image

PROMPT_SETS = ("forget", "remain")
GRID_CELL_SIZE = 256  # larger images are shrunk to this width in grids, so a grid suits a model card
_EVALUATION_STREAM = 5  # derive_seed stream of evaluation images (3: generated data, 4: validation)


def in_batches(items: Sequence, batch_size: int, description: str):
    """``items`` in batches, with a progress bar (I2P or COCO sets run to thousands of images)."""
    from tqdm.auto import tqdm

    starts = range(0, len(items), batch_size)
    for start in tqdm(starts, desc=description, leave=False, disable=len(starts) < 2):
        yield items[start : start + batch_size]


def image_seed(seed: int, prompt_set: str, prompt_index: int, image_index: int) -> int:
    """The seed of image ``image_index`` of prompt ``prompt_index``: the same for every model evaluated."""
    from ..randomness import derive_seed

    return derive_seed(seed, _EVALUATION_STREAM, PROMPT_SETS.index(prompt_set), prompt_index, image_index)


def generate_prompt_images(
    pipeline, prompts: Sequence[str], settings, seed_of, description: str = ""
) -> list[list[Image.Image]]:
    """``[[image j of prompt i]]``, ``settings.num_images`` per prompt, in batches of ``settings.batch_size``
    (an EvaluationSettings gives the steps, guidance and size); image (i, j) comes from its own generator
    seeded with ``seed_of(i, j)``, so batching changes nothing."""
    from tqdm.auto import tqdm

    from ..generation import seeded_images

    pipeline.set_progress_bar_config(disable=True)
    items = [(i, j) for i in range(len(prompts)) for j in range(settings.num_images)]
    images: list[list] = [[None] * settings.num_images for _ in prompts]
    batches = [items[start : start + settings.batch_size] for start in range(0, len(items), settings.batch_size)]
    for batch in tqdm(batches, desc=description or None, disable=not description):
        generated = seeded_images(
            pipeline,
            [prompts[i] for i, _ in batch],
            [seed_of(i, j) for i, j in batch],
            settings.num_inference_steps,
            settings.guidance_scale,
            settings.resolution,
        )
        for (i, j), image in zip(batch, generated):
            images[i][j] = image
    return images


def generate_image_sets(pipeline, settings, name: str = "") -> dict[str, list[list[Image.Image]]]:
    """``{prompt set: [[image j of prompt i]]}`` for the forget and remain prompts of ``settings`` (an
    EvaluationSettings), every model drawing image (i, j) from the same seed."""
    return {
        prompt_set: generate_prompt_images(
            pipeline,
            settings.prompts(prompt_set),
            settings,
            lambda i, j, s=prompt_set: image_seed(settings.seed, s, i, j),
            f"{name} {prompt_set} images".strip(),
        )
        for prompt_set in PROMPT_SETS
    }


def image_file_name(prompt_index: int, image_index: int) -> str:
    return f"{prompt_index:05d}_{image_index:02d}.png"


def save_image_sets(image_sets: dict, settings, folder: str) -> dict[str, str]:
    """Writes each prompt set to ``folder/<set>/`` with a metadata.jsonl (file_name, text, seed); returns
    the folders."""
    folders = {}
    for prompt_set, rows in image_sets.items():
        target = os.path.join(folder, prompt_set)
        os.makedirs(target, exist_ok=True)
        with open(os.path.join(target, "metadata.jsonl"), "w", encoding="utf-8") as handle:
            for i, (prompt, row) in enumerate(zip(settings.prompts(prompt_set), rows)):
                for j, image in enumerate(row):
                    name = image_file_name(i, j)
                    image.save(os.path.join(target, name))
                    seed = image_seed(settings.seed, prompt_set, i, j)
                    handle.write(json.dumps({"file_name": name, "text": prompt, "seed": seed}) + "\n")
        folders[prompt_set] = target
    return folders


def _grid_cells(rows: list[list[Image.Image]], num_prompts: int, num_images: int) -> list[list[Image.Image]]:
    def shrink(image: Image.Image) -> Image.Image:
        if image.width <= GRID_CELL_SIZE:
            return image
        return image.resize((GRID_CELL_SIZE, round(image.height * GRID_CELL_SIZE / image.width)), Image.LANCZOS)

    return [[shrink(image) for image in row[:num_images]] for row in rows[:num_prompts]]


def save_grids(
    base_sets: dict, erased_sets: dict, num_prompts: int, num_images: int, output_dir: str
) -> dict[str, str]:
    """``grid_<set>.png`` for each prompt set: a row for each of its first ``num_prompts`` prompts, with
    ``num_images`` base images on the left and the erased model's from the same seeds on the right."""
    from ..validation import before_after_grid

    os.makedirs(output_dir, exist_ok=True)
    paths = {}
    for prompt_set in base_sets:
        grid = before_after_grid(
            _grid_cells(base_sets[prompt_set], num_prompts, num_images),
            _grid_cells(erased_sets[prompt_set], num_prompts, num_images),
        )
        paths[prompt_set] = os.path.join(output_dir, f"grid_{prompt_set}.png")
        grid.save(paths[prompt_set])
    return paths
