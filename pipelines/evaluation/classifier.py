"""An image classifier (transformers, ImageNet-style labels) and the matching of forget labels to its classes."""

from __future__ import annotations

import difflib
from typing import Sequence

import torch
from PIL import Image

from ..errors import InputError
from .images import in_batches
from .settings import DEFAULT_CLASSIFIER_MODEL


def _label_names(label: str) -> list[str]:
    """ImageNet labels list synonyms ("church, church building"); each one names the class."""
    return [label.lower().strip(), *(part.lower().strip() for part in label.split(","))]


def label_ids_for(id2label: dict, names: Sequence[str], model_name: str) -> list[int]:
    """The class ids whose label (or one of its comma-separated synonyms) equals one of ``names``,
    case-insensitively; raises InputError naming close labels when a name matches none."""
    ids = []
    for name in names:
        wanted = name.lower().strip()
        matches = [int(i) for i, label in id2label.items() if wanted in _label_names(label)]
        if not matches:
            close = difflib.get_close_matches(wanted, [n for label in id2label.values() for n in _label_names(label)])
            hint = f"; close labels: {', '.join(close)}" if close else ""
            raise InputError(
                f"--classifier_labels: {name!r} is not a class of {model_name}{hint}; name the forget class as the classifier labels it"
            )
        ids.extend(matches)
    return sorted(set(ids))


class ImageClassifier:
    """A transformers image-classification model and its image processor."""

    def __init__(
        self, model_name: str = DEFAULT_CLASSIFIER_MODEL, device: str | torch.device = "cpu", batch_size: int = 32
    ):
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        self.name, self.device, self.batch_size = model_name, torch.device(device), batch_size
        self.processor = AutoImageProcessor.from_pretrained(model_name)
        self.model = AutoModelForImageClassification.from_pretrained(model_name).to(self.device).eval()
        self.id2label = {int(i): label for i, label in self.model.config.id2label.items()}

    @torch.no_grad()
    def top1(self, images: Sequence[Image.Image]) -> list[int]:
        """The predicted class id of each image."""
        predictions = []
        for batch in in_batches(list(images), self.batch_size, "classifier"):
            pixels = self.processor(images=[image.convert("RGB") for image in batch], return_tensors="pt")
            logits = self.model(pixel_values=pixels["pixel_values"].to(self.device)).logits
            predictions.extend(logits.argmax(dim=-1).tolist())
        return predictions
