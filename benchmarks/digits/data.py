"""The digits data: scikit-learn's bundled 8×8 handwritten digits (no download), the prompts that name
them, the tiny CLIP vocabulary of those prompts, and the conversions between the 8×8 arrays, the 16×16 RGB
images the model draws, and the judge's 8×8 input."""

from __future__ import annotations

import os
import sys

import numpy as np

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PROMPT_TEMPLATE = "a handwritten digit {}"
VOCAB_WORDS = ("a", "handwritten", "digit", *DIGIT_WORDS)
MAX_TOKENS = 8  # <bos> a handwritten digit three <eos>, padded
IMAGE_SIZE = 16  # the model's images: the 8×8 digits upsampled ×2
SPLIT_SEED = 0
TEST_FRACTION = 0.3


def prompt_for(digit: int) -> str:
    """The prompt that asks for one digit, e.g. "a handwritten digit three"."""
    return PROMPT_TEMPLATE.format(DIGIT_WORDS[digit])


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The digits as 8×8 arrays in [0, 1], split once (stratified, fixed seed) into a training part (base
    model and judge) and a held-out part (judge accuracy and threshold, the Fréchet reference)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    train_x, test_x, train_y, test_y = train_test_split(
        images, digits.target, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=digits.target
    )
    return train_x, train_y, test_x, test_y


def upsample(images: np.ndarray):
    """8×8 arrays in [0, 1] → a [N, 3, 16, 16] tensor in [-1, 1] (bilinear, grey in all three channels)."""
    import torch
    import torch.nn.functional as F

    tensor = torch.as_tensor(images, dtype=torch.float32)[:, None]
    tensor = F.interpolate(tensor, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    return (tensor.clamp(0, 1) * 2 - 1).repeat(1, 3, 1, 1)


def real_as_images(images: np.ndarray) -> np.ndarray:
    """Real 8×8 digits as the model's images would be: upsampled and quantised, [N, 16, 16, 3] uint8."""
    pixels = (upsample(images).permute(0, 2, 3, 1).numpy() + 1) / 2
    return np.round(pixels * 255).astype(np.uint8)


def write_real_image_folder(folder: str, digits) -> int:
    """Writes the training split's real images of ``digits`` (16×16 PNGs, as the model draws them) to
    ``folder`` in the imagefolder layout, each captioned with its digit's prompt; returns how many."""
    import json

    from PIL import Image

    from pipelines.generation import image_file_name

    train_x, train_y, _, _ = load_split()
    keep = np.isin(train_y, list(digits))
    os.makedirs(folder, exist_ok=True)
    records = []
    for index, (image, label) in enumerate(zip(real_as_images(train_x[keep]), train_y[keep])):
        records.append({"file_name": image_file_name(index), "text": prompt_for(int(label))})
        Image.fromarray(image).save(os.path.join(folder, records[-1]["file_name"]))
    # Written last, so a folder with metadata is complete.
    with open(os.path.join(folder, "metadata.jsonl"), "w", encoding="utf-8") as metadata:
        metadata.writelines(json.dumps(record) + "\n" for record in records)
    return len(records)


def judge_input(images) -> np.ndarray:
    """16×16 RGB images (PIL images or a [N, 16, 16, 3] uint8 array) → [N, 64] in [0, 1]: grey, then the
    mean of each 2×2 block, the judge's 8×8 view."""
    array = np.stack([np.asarray(image) for image in images]) if not isinstance(images, np.ndarray) else images
    grey = array.astype(np.float32).mean(axis=-1) / 255.0
    n, height, width = grey.shape
    blocks = grey.reshape(n, 8, height // 8, 8, width // 8).mean(axis=(2, 4))
    return blocks.reshape(n, 64)


def write_clip_vocab(folder: str, words=VOCAB_WORDS) -> int:
    """vocab.json and merges.txt of the digits model's CLIP tokenizer (the tests' offline vocabulary writer)."""
    sys.path.insert(
        0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tests")
    )
    from tiny_models import write_tokenizer_files

    return write_tokenizer_files(folder, words)
