"""What the attack suite runs and with which budget, checked before any model loads."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from ...errors import InputError

ATTACKS = ("paraphrase", "inversion", "embedding", "relearn")
OPTIMISING_ATTACKS = ("inversion", "embedding", "relearn")


def parse_attack_names(value: str | list[str], argument: str = "--attacks") -> list[str]:
    """``"paraphrase,relearn"`` (or a list already parsed) → ["paraphrase", "relearn"]; ``all`` names every attack."""
    parts = value.split(",") if isinstance(value, str) else value
    names = [n.strip() for n in parts if n.strip()]
    if names == ["all"]:
        return list(ATTACKS)
    if "all" in names:
        raise InputError(f"{argument}: all names every attack by itself; give all, or a list of {', '.join(ATTACKS)}")
    unknown = [n for n in names if n not in ATTACKS]
    if unknown or not names:
        raise InputError(
            f"{argument}: unknown attack {unknown[0] if unknown else value!r}; choose from {', '.join(ATTACKS)} or all"
        )
    return list(dict.fromkeys(names))


@dataclass
class AttackSettings:
    """The attacks to run and their budgets. Images are generated with the evaluation's settings (steps,
    guidance, size, images per prompt, seed)."""

    attacks: list[str] = field(default_factory=lambda: list(ATTACKS))
    paraphrase_prompts: list[str] | None = None  # None: the concept type's built-in set (paraphrase.py)
    images: int = 8  # concept images the attacker holds: the base model's, unless images_dir is given
    images_dir: str | None = None  # the attacker's own concept images (an image folder)
    control_images_dir: str | None = (
        None  # images of something else, for the controls (default: the base's remain images)
    )
    steps: int = 100  # optimisation steps of inversion and embedding
    learning_rate: float = 5e-3  # of the learned embeddings
    batch_size: int = 4  # images per optimisation step (inversion, embedding, relearn)
    embedding_tokens: int = 3  # tokens the embedding attack puts in front of each forget prompt
    relearn_steps: int = 50
    relearn_learning_rate: float = 1e-5
    relearn_every: int = 10  # the relearning curve's spacing in steps
    seed: int = 0

    def check(self) -> None:
        """Raises InputError (one line) for settings the suite cannot run."""
        unknown = [a for a in self.attacks if a not in ATTACKS]
        if unknown:
            raise InputError(f"--attacks: unknown attack {unknown[0]}; choose from {', '.join(ATTACKS)}")
        for name in ("images", "steps", "batch_size", "embedding_tokens", "relearn_steps", "relearn_every"):
            if getattr(self, name) <= 0:
                raise InputError(f"--attack_{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("learning_rate", "relearn_learning_rate"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise InputError(f"--attack_{name} must be a positive finite number, got {value}")
        for name in ("images_dir", "control_images_dir"):
            folder = getattr(self, name)
            if folder is None:
                continue
            if not os.path.isdir(folder):
                raise InputError(f"--attack_{name} {folder} is not a folder; give a folder of images")
            from ...data_sources import read_image_folder

            read_image_folder(folder, f"--attack_{name}")  # a folder it cannot read fails now, not after generation
        if self.paraphrase_prompts is not None and not self.paraphrase_prompts:
            raise InputError("--paraphrase_prompts holds no prompt")

    def budget(self, attack: str, images_held: int | None = None) -> dict:
        """The settings that bound ``attack``, as recorded next to its result; ``images_held``: how many
        concept images the attacker really had (a folder may hold fewer than ``images``)."""
        images = {"images": self.images if images_held is None else images_held, "batch_size": self.batch_size}
        if attack in ("inversion", "embedding"):
            extra = {"tokens": self.embedding_tokens} if attack == "embedding" else {"tokens": 1}
            return {**images, "steps": self.steps, "learning_rate": self.learning_rate, **extra}
        if attack == "relearn":
            return {
                **images,
                "steps": self.relearn_steps,
                "learning_rate": self.relearn_learning_rate,
                "every": self.relearn_every,
            }
        return {}
