"""New words whose input embeddings are trained while everything else stays frozen (textual inversion).

The words go into copies of a pipeline's tokenizers and text encoders, so the pipeline itself is untouched.
Each copied encoder's token-embedding table gets placeholder rows for the new ids, and a forward hook on the
table puts the trained vectors (one ``torch.nn.Parameter`` per encoder) in their place, so gradients reach
those vectors and nothing else. The attacks that learn a word (concept inversion) or a few prompt tokens
(the embedding attack), and adversarial erasure during training, all use this one mechanism.
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch

from .families import PromptEmbeddings, TextConditioner


class LearnedTokens:
    """``count`` new words (``self.words``) in copies of ``tokenizers`` and ``text_encoders``."""

    def __init__(
        self,
        family,
        tokenizers: Sequence,
        text_encoders: Sequence,
        count: int,
        name: str = "learned",
        initial_word: str | None = None,
        generator: torch.Generator | None = None,
    ):
        """``family`` is the ModelFamily (or its name) whose conditioning the encoders compute. The vectors start
        at ``initial_word``'s embedding (its first token), or, without one, as random
        vectors with the table's mean row norm (drawn from ``generator``)."""
        self.words = [f"<{name}-{i}>" for i in range(count)]
        self.tokenizers = [copy.deepcopy(t) for t in tokenizers]
        self.text_encoders = [copy.deepcopy(e).float().requires_grad_(False).eval() for e in text_encoders]
        self.vectors: list[torch.nn.Parameter] = []
        for tokenizer, encoder in zip(self.tokenizers, self.text_encoders):
            tokenizer.add_tokens(self.words)
            ids = tokenizer.convert_tokens_to_ids(self.words)
            table = encoder.get_input_embeddings().weight
            if initial_word is not None:
                first = tokenizer(initial_word, add_special_tokens=False).input_ids[0]
                start = table[first].detach().clone().repeat(count, 1)
            else:
                start = torch.randn(count, table.shape[1], generator=generator)
                start = start / start.norm(dim=1, keepdim=True) * table.detach().norm(dim=1).mean()
            encoder.resize_token_embeddings(len(tokenizer))
            vectors = torch.nn.Parameter(start.to(table.device))
            self.vectors.append(vectors)
            encoder.get_input_embeddings().register_forward_hook(_substitute(torch.tensor(ids), vectors))
        self.conditioner = TextConditioner(family, self.tokenizers, self.text_encoders)

    def parameters(self) -> list[torch.nn.Parameter]:
        """The trained vectors, one [count, D] parameter per text encoder."""
        return list(self.vectors)

    def fit(self, loss_at: Callable[[int], torch.Tensor], steps: int, learning_rate: float) -> list[float]:
        """Adam on the vectors alone for ``steps`` steps, step k minimising ``loss_at(k)``; returns each step's
        loss. The gradients come from ``torch.autograd.grad``, so nothing else the loss touches gets one."""
        parameters = self.parameters()
        optimizer = torch.optim.Adam(parameters, lr=learning_rate)
        losses = []
        for k in range(steps):
            loss = loss_at(k)
            for parameter, gradient in zip(parameters, torch.autograd.grad(loss, parameters)):
                parameter.grad = gradient
            optimizer.step()
            losses.append(float(loss.detach()))
        return losses

    def to(self, device) -> "LearnedTokens":
        """Moves the copied text encoders and the vectors to ``device``."""
        for encoder in self.text_encoders:
            encoder.to(device)
        for vectors in self.vectors:
            vectors.data = vectors.data.to(device)
        return self

    def phrase(self) -> str:
        """The new words as one space-separated phrase, to put into a prompt."""
        return " ".join(self.words)

    def embed(self, prompts: Sequence[str], device) -> PromptEmbeddings:
        """The prompts' conditioning, differentiable in the vectors."""
        return self.conditioner.embed(prompts, device)

    def components(self) -> dict:
        """The copied tokenizers and text encoders under the family's component names (``tokenizer``,
        ``text_encoder``, ``tokenizer_2``, …) to build a pipeline that understands the words."""
        parts = {}
        for slot, tokenizer, encoder in zip(
            self.conditioner.model_family.text_encoders, self.tokenizers, self.text_encoders
        ):
            parts[slot.tokenizer], parts[slot.encoder] = tokenizer, encoder
        return parts

    def state(self) -> dict:
        """JSON-ready facts about the vectors: the words and each encoder's vector norms."""
        return {
            "words": self.words,
            "norms": [[round(float(n), 4) for n in v.detach().norm(dim=1)] for v in self.vectors],
        }


def _substitute(ids: torch.Tensor, vectors: torch.nn.Parameter):
    """A forward hook for a token-embedding table: the rows of ``ids`` become ``vectors``."""

    def hook(module, inputs, output):
        input_ids = inputs[0]
        position = (input_ids[..., None] == ids.to(input_ids.device)).long()  # [..., count]
        found = position.sum(-1, keepdim=True).bool()
        learned = (position.to(vectors.dtype) @ vectors).to(output.dtype)
        return torch.where(found, learned, output)

    return hook


def pipeline_with_tokens(pipeline, tokens: LearnedTokens):
    """A pipeline of the same class that shares every component of ``pipeline`` except the tokenizers and text
    encoders, which are ``tokens``' copies (on the pipeline's device)."""
    tokens.to(pipeline.device)
    built = type(pipeline)(**{**pipeline.components, **tokens.components()})
    built.set_progress_bar_config(disable=True)
    return built
