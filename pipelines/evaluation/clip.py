"""A CLIP model as a measuring instrument: unit-length image and text embeddings, CLIP score and zero-shot
classification."""

from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image

from .images import in_batches
from .settings import DEFAULT_CLIP_MODEL


def _pooled(output) -> torch.Tensor:
    """Projected features from ``get_*_features`` (a tensor in transformers 4, an output object in 5)."""
    return output if torch.is_tensor(output) else output.pooler_output


class ClipModel:
    """A transformers CLIPModel with its processor: unit-length image and text embeddings, batched."""

    def __init__(self, model_name: str = DEFAULT_CLIP_MODEL, device: str | torch.device = "cpu", batch_size: int = 32):
        from transformers import CLIPModel, CLIPProcessor

        self.name, self.device, self.batch_size = model_name, torch.device(device), batch_size
        self.processor = CLIPProcessor.from_pretrained(model_name)
        self.model = CLIPModel.from_pretrained(model_name).to(self.device).eval()

    @torch.no_grad()
    def image_embeddings(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """[N, D] unit-length image embeddings."""
        embeddings = []
        for batch in in_batches(list(images), self.batch_size, "CLIP image features"):
            pixels = self.processor(images=[image.convert("RGB") for image in batch], return_tensors="pt")
            features = _pooled(self.model.get_image_features(pixel_values=pixels["pixel_values"].to(self.device)))
            embeddings.append(torch.nn.functional.normalize(features.float(), dim=-1).cpu())
        return torch.cat(embeddings)

    @torch.no_grad()
    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """[N, D] unit-length text embeddings; long prompts (I2P has many) are cut at CLIP's 77 tokens."""
        embeddings = []
        for batch in in_batches(list(texts), self.batch_size, "CLIP text features"):
            tokens = self.processor.tokenizer(list(batch), padding=True, truncation=True, return_tensors="pt")
            features = _pooled(
                self.model.get_text_features(
                    input_ids=tokens["input_ids"].to(self.device),
                    attention_mask=tokens["attention_mask"].to(self.device),
                )
            )
            embeddings.append(torch.nn.functional.normalize(features.float(), dim=-1).cpu())
        return torch.cat(embeddings)


def clip_scores(image_embeddings: torch.Tensor, prompt_embeddings: torch.Tensor) -> torch.Tensor:
    """CLIP score of each image with its own prompt (row i with row i): 100 · max(cos, 0), the scale of
    torchmetrics' CLIPScore. Both inputs are unit-length embeddings."""
    return 100 * (image_embeddings * prompt_embeddings).sum(dim=-1).clamp(min=0)


def zero_shot_predictions(image_embeddings: torch.Tensor, class_embeddings: torch.Tensor) -> list[int]:
    """For each image, the index of the class text it is most similar to (CLIP zero-shot classification)."""
    return (image_embeddings @ class_embeddings.T).argmax(dim=-1).tolist()
