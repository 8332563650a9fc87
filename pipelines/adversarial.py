"""Adversarial erasure, in the spirit of AdvUnlearn (Zhang et al., NeurIPS 2024): erasure that also holds
against a learned word. Every ``refresh_steps`` optimizer steps, the word is trained a few steps further,
with the UNet as it is now, to make the model draw the forget images again (concept inversion, the attack
of pipelines/evaluation/attacks/inversion.py, run against the model being erased); the forget loss is then
taken under the forget prompts and, for the same noised samples, under the forget templates with that word
in the concept's place. The word starts each refresh where the last one ended, so it follows the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .erasure_step import denoising_loss_of, draw_micro_batch, predict
from .families import ModelFamily, PromptEmbeddings, TextConditioner
from .latent_cache import EncodedImageSet
from .learned_tokens import LearnedTokens
from .randomness import SampleStream, derive_seed

ADVERSARY_STREAM = 7  # derive_seed stream of the adversary's draws (1, 2: forget and remain samples)


@dataclass(frozen=True)
class AdversarySettings:
    """How often the adversarial word is retrained, for how many steps and at which learning rate."""

    refresh_steps: int = 0  # 0: no adversarial erasure
    steps: int = 10
    learning_rate: float = 5e-3
    batch_size: int = 4


class AdversarialWord:
    """The adversary's word for the forget ``templates`` (prompts with ``{}`` where the concept was)."""

    def __init__(
        self, conditioner: TextConditioner, templates: list[str], settings: AdversarySettings, seed: int, device
    ):
        """The word lives in copies of ``conditioner``'s text encoders. It starts as a random vector drawn
        from ``seed``, the same on every process."""
        self.templates, self.settings, self.device = list(templates), settings, device
        self.tokens = LearnedTokens(
            conditioner.model_family,
            conditioner.tokenizers,
            conditioner.text_encoders,
            1,
            name="adversarial",
            generator=torch.Generator().manual_seed(derive_seed(seed, ADVERSARY_STREAM)),
        ).to(device)
        self.seed = seed
        self.conditions: PromptEmbeddings | None = None  # the templates with the word, after a refresh

    def prompts(self) -> list[str]:
        """The templates with the word in the concept's place."""
        return [t.format(self.tokens.phrase()) for t in self.templates]

    def refresh(
        self, family: ModelFamily, unet, forget_set: EncodedImageSet, noising, refresh_index: int, model_dtype
    ) -> float:
        """Trains the word for ``settings.steps`` steps against ``unet`` on the forget samples (their own draws,
        the same on every process) with the family's denoising loss; returns the last step's loss."""
        stream = SampleStream(
            derive_seed(self.seed, ADVERSARY_STREAM, refresh_index), ADVERSARY_STREAM, len(forget_set)
        )
        size, prompts = self.settings.batch_size, self.prompts()

        def loss_at(k: int) -> torch.Tensor:
            positions = list(range(k * size, (k + 1) * size))
            batch = draw_micro_batch(forget_set, stream, positions, noising, self.device)
            embeds = self.tokens.embed([prompts[i % len(prompts)] for i in positions], self.device)
            output = predict(family, unet, [batch], model_dtype, [embeds])[0]
            return denoising_loss_of(batch, output, noising)

        losses = self.tokens.fit(loss_at, self.settings.steps, self.settings.learning_rate)
        self.update_conditions()
        return losses[-1]

    @torch.no_grad()
    def update_conditions(self) -> None:
        """Encodes the templates with the word as it is now: the forget batches' extra conditions."""
        self.conditions = self.tokens.embed(self.prompts(), self.device)

    def state(self) -> list:
        """The word's vectors (one list per text encoder), for the checkpoint manifest."""
        return [vectors.detach().cpu().tolist() for vectors in self.tokens.parameters()]

    def load_state(self, state: list) -> None:
        """Restores the vectors ``state`` recorded, and the conditions they give."""
        for vectors, values in zip(self.tokens.parameters(), state):
            vectors.data = torch.tensor(values, dtype=vectors.dtype, device=vectors.device)
        self.update_conditions()
