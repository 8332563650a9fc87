"""Reading forget/remain image sets: imagefolder layouts and `datasets` datasets, with clear errors."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Union

from PIL import Image, UnidentifiedImageError

from .errors import InputError

METADATA_FILE = "metadata.jsonl"
ImageRef = Union[str, Image.Image]


@dataclass
class CaptionedImages:
    """Images (paths or PIL images) with their captions, and a one-line account of where they came from."""

    images: list[ImageRef] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    def extend(self, other: "CaptionedImages") -> None:
        """Appends another set (sets from several sources combine)."""
        self.images.extend(other.images)
        self.captions.extend(other.captions)
        self.sources.extend(other.sources)


def load_image(ref: ImageRef) -> Image.Image:
    """Opens an image as RGB; a file that is not a readable image raises InputError naming it."""
    if isinstance(ref, Image.Image):
        return ref.convert("RGB")
    try:
        with Image.open(ref) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise InputError(f"cannot read image {ref}: {error}; replace or remove the file") from error


def read_image_folder(
    folder: str, argument: str, caption_column: str = "text", verify: bool = True
) -> CaptionedImages:
    """Reads a `datasets` imagefolder layout: images beside a metadata.jsonl of ``file_name`` and captions.

    With ``verify`` every image is decoded once now, so a corrupt file is named before any model loads.
    """
    if not os.path.isdir(folder):
        raise InputError(f"{argument}: {folder} is not a folder")
    metadata_path = os.path.join(folder, METADATA_FILE)
    if not os.path.isfile(metadata_path):
        raise InputError(
            f"{argument}: {folder} has no {METADATA_FILE}; add one line per image: "
            f'{{"file_name": "0001.png", "{caption_column}": "a caption"}}'
        )
    images, captions = [], []
    with open(metadata_path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise InputError(f"{metadata_path} line {line_number} is not JSON: {error}") from error
            if "file_name" not in record or caption_column not in record:
                raise InputError(
                    f"{metadata_path} line {line_number} lacks 'file_name' or the caption column "
                    f"'{caption_column}'; set --caption_column to the key that holds the captions"
                )
            path = os.path.join(folder, record["file_name"])
            if not os.path.isfile(path):
                raise InputError(f"{metadata_path} line {line_number} names {path}, which does not exist")
            images.append(path)
            captions.append(str(record[caption_column]))
    if not images:
        raise InputError(f"{argument}: {folder} lists no images in {METADATA_FILE}; add some or drop the argument")
    if verify:
        for path in images:
            load_image(path)
    return CaptionedImages(images, captions, [f"image folder {folder} ({len(images)} images)"])


def load_dataset_images(
    name: str, argument: str, image_column: str, caption_column: str, cache_dir: str | None = None
) -> CaptionedImages:
    """Loads the train split of a `datasets` dataset (Hub name, local loadable folder, or a folder written by
    ``save_to_disk``) and checks that it has the image and caption columns."""
    import datasets

    if (
        os.path.isdir(name)
        and os.path.isfile(os.path.join(name, "dataset_info.json"))
        and os.path.isfile(os.path.join(name, "state.json"))
    ):
        dataset = datasets.load_from_disk(name)
    else:
        try:
            dataset = datasets.load_dataset(name, cache_dir=cache_dir)
        except Exception as error:  # datasets raises many types; the user needs the name and the cause
            raise InputError(f"{argument}: cannot load dataset {name}: {error}") from error
    if isinstance(dataset, datasets.DatasetDict):
        if "train" not in dataset:
            raise InputError(f"{argument}: dataset {name} has no 'train' split (it has {list(dataset)})")
        dataset = dataset["train"]
    for column, flag in ((image_column, "--image_column"), (caption_column, "--caption_column")):
        if column not in dataset.column_names:
            raise InputError(
                f"{argument}: dataset {name} has no column '{column}' (it has {dataset.column_names}); set {flag}"
            )
    if len(dataset) == 0:
        raise InputError(f"{argument}: dataset {name} is empty")
    images = list(dataset[image_column])
    captions = [str(c) for c in dataset[caption_column]]
    return CaptionedImages(images, captions, [f"dataset {name} ({len(images)} images)"])
