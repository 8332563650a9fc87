"""Reading forget/remain image sets: imagefolder layouts and `datasets` datasets, with clear errors."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import InputError
from .text_files import read_text_lines

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


def _composite_on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any PIL mode, keeping what the pixels mean (PIL's own ``convert("RGB")`` clips 16-bit
    values to white and reads floats in [0, 1] as black):

    - 16-bit integers (``I;16*``, and ``I`` holding values above 255) are scaled by 255/65535;
    - floats (``F``) are read as [0, 1] when their maximum is at most 1, else as [0, 255];
    - transparency (RGBA, LA, PA, palette with a transparent colour) is composited onto white;
    - everything else (CMYK, palette, 1-bit, YCbCr, ...) converts as PIL does.
    """
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image.copy()  # loaded and detached from its file
    if mode.startswith("I;16") or mode == "I" or mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if mode == "F":
            scale = 255.0 if values.size and np.nanmax(values) <= 1.0 else 1.0
        elif mode == "I" and (not values.size or values.max() <= 255):
            scale = 1.0
        else:
            scale = 255.0 / 65535.0
        gray = np.clip(np.round(np.nan_to_num(values) * scale), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:  # incl. a tRNS colour
        return _composite_on_white(image)
    if mode == "LAB":  # PIL's convert() would copy the channels; a colour transform turns L*a*b* into sRGB
        from PIL import ImageCms

        transform = ImageCms.buildTransform(
            ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"
        )
        return ImageCms.applyTransform(image, transform)
    return image.convert("RGB")


def load_image(ref: ImageRef) -> Image.Image:
    """Opens an image as 8-bit RGB (``to_rgb``); a file that is not a readable image, or one over PIL's
    decompression-bomb limit, raises InputError naming it."""
    if isinstance(ref, Image.Image):
        return to_rgb(ref)
    try:
        with Image.open(ref) as image:
            return to_rgb(image)
    except Image.DecompressionBombError as error:
        raise InputError(
            f"image {ref} is too large to open safely ({error}); resize it below {Image.MAX_IMAGE_PIXELS:,} pixels"
        ) from error
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise InputError(f"cannot read image {ref}: {error}; replace or remove the file") from error


def _inside_folder(folder: str, file_name) -> str | None:
    """The path of ``file_name`` in ``folder``, or None when it is not a plain relative path (not text, empty,
    absolute, with a NUL, climbing out with ``..``) or resolves (through a symlink) outside the folder."""
    if not isinstance(file_name, str) or not file_name or "\0" in file_name:
        return None
    if os.path.isabs(file_name) or ".." in file_name.replace("\\", "/").split("/"):
        return None
    path = os.path.join(folder, file_name)
    root = os.path.realpath(folder)
    if os.path.commonpath([root, os.path.realpath(path)]) != root:
        return None
    return path


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
    for line_number, line in enumerate(read_text_lines(metadata_path, argument), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(f"{metadata_path} line {line_number} is not JSON: {error}") from error
        if not isinstance(record, dict):
            raise InputError(
                f'{metadata_path} line {line_number} is not a JSON object; write {{"file_name": ..., "{caption_column}": ...}}'
            )
        if "file_name" not in record or caption_column not in record:
            raise InputError(
                f"{metadata_path} line {line_number} lacks 'file_name' or the caption column "
                f"'{caption_column}'; set --caption_column to the key that holds the captions"
            )
        if not isinstance(record[caption_column], (str, int, float)) or isinstance(record[caption_column], bool):
            raise InputError(
                f"{metadata_path} line {line_number}: the caption '{caption_column}' is {json.dumps(record[caption_column])}; "
                'give a text ("" for none)'
            )
        path = _inside_folder(folder, record["file_name"])
        if path is None:
            raise InputError(
                f"{metadata_path} line {line_number}: file_name {record['file_name']!r} is not a path inside {folder}; "
                "give paths relative to the folder, inside it"
            )
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
    try:
        images = list(dataset[image_column])
    except Image.DecompressionBombError as error:
        raise InputError(
            f"{argument}: dataset {name} holds an image too large to open safely ({error}); "
            f"resize it below {Image.MAX_IMAGE_PIXELS:,} pixels"
        ) from error
    captions = [str(c) for c in dataset[caption_column]]
    return CaptionedImages(images, captions, [f"dataset {name} ({len(images)} images)"])
