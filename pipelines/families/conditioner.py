"""Prompts to conditioning with a family's frozen text encoders."""

from __future__ import annotations

from typing import Sequence

import torch

from .base import PromptEmbeddings, concatenated


class TextConditioner:
    """Encodes prompts with the family's text encoders (``family`` is a ModelFamily or its name)."""

    def __init__(self, family, tokenizers: Sequence, text_encoders: Sequence):
        from . import get_family

        self.model_family = get_family(family) if isinstance(family, str) else family
        self.family = self.model_family.name
        self.tokenizers, self.text_encoders = list(tokenizers), list(text_encoders)

    def embed(self, prompts: Sequence[str], device) -> PromptEmbeddings:
        """Embeddings of ``prompts`` in one batch, differentiable (learned_tokens trains through this)."""
        return self.model_family.embed(self.tokenizers, self.text_encoders, prompts, device)

    @torch.no_grad()
    def encode(self, prompts: Sequence[str], device, batch_size: int = 32) -> PromptEmbeddings:
        """Embeddings of ``prompts``, computed in batches."""
        return concatenated(
            [self.embed(prompts[start : start + batch_size], device) for start in range(0, len(prompts), batch_size)]
        )
