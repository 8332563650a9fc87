"""Randomness drawn per global sample, so a run's result does not depend on the number of processes.

Every training sample has a position in an endless stream (one stream for D_f, one for D_r). The item it
shows, its augmentation, timestep, ε and ε_f all come from a generator seeded by (seed, stream, position).
Process ``rank`` of ``world`` takes positions ``[rank·B, (rank+1)·B)`` of each global micro-batch, so one
process with batch 2B sees exactly what two processes with batch B see together. Resuming at a step
redraws the same numbers, so no random state needs saving.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .objective import ForgetNoise

FORGET_STREAM = 1
REMAIN_STREAM = 2
_EPOCH_ORDER = 0
_SAMPLE = 1
_EMPTY_PROMPT = 2  # its own generator, so that turning prompt dropping on changes no other draw


def derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from a tuple of non-negative integers."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, dtype=np.uint64)[0] >> 1)


def global_positions(micro_batch_index: int, rank: int, world_size: int, local_batch_size: int) -> list[int]:
    """Stream positions of this process's samples in global micro-batch ``micro_batch_index``."""
    start = (micro_batch_index * world_size + rank) * local_batch_size
    return list(range(start, start + local_batch_size))


@dataclass
class SampleDraws:
    """What each sample of a micro-batch draws: the item it shows and its random numbers."""

    item_indices: list[int]
    augmentation: torch.Tensor  # [B, 3] uniforms in [0, 1): crop x, crop y, flip
    latent_noise: torch.Tensor  # [B, C, H, W], for sampling the VAE's latent distribution
    timesteps: torch.Tensor  # [B]: long DDPM steps, or float σ·T under flow matching
    noise: torch.Tensor  # [B, C, H, W], ε ~ N(0, I)
    forget_noise: torch.Tensor | None  # [B, C, H, W], ε_f, forget stream only
    empty_prompt: torch.Tensor | None = None  # [B] bool: train this sample with the empty prompt


class SampleStream:
    """The endless, seeded order of one data set's items and the random numbers of each sample."""

    def __init__(self, seed: int, stream_id: int, num_items: int):
        if num_items <= 0:
            raise ValueError("a sample stream needs at least one item")
        self.seed, self.stream_id, self.num_items = seed, stream_id, num_items
        self._orders: dict[int, torch.Tensor] = {}

    def item_index(self, position: int) -> int:
        """The item shown at ``position``: epochs are independent random permutations of the items."""
        epoch, offset = divmod(position, self.num_items)
        if epoch not in self._orders:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, self.stream_id, _EPOCH_ORDER, epoch))
            self._orders = {epoch: torch.randperm(self.num_items, generator=generator)}
        return int(self._orders[epoch][offset])

    def draw(
        self,
        positions: Sequence[int],
        latent_shape: Sequence[int],
        timesteps,
        forget_noise: ForgetNoise | None = None,
        empty_prompt_probability: float = 0.0,
    ) -> SampleDraws:
        """Draws, on the CPU and in a fixed order, every random number the given samples need; with
        ``empty_prompt_probability`` > 0, also whether each sample's caption is replaced by the empty prompt.
        ``timesteps`` is the number of DDPM timesteps (t uniform in [0, T)) or a training-noise convention
        (pipelines/noising.py) that draws each sample's timestep from its generator."""
        if isinstance(timesteps, int):
            count = timesteps

            def draw_timestep(generator):
                return torch.randint(0, count, (), generator=generator)
        else:
            draw_timestep = timesteps.draw_timestep
        augmentation, latent_noise, drawn_timesteps, noise, shifted = [], [], [], [], []
        for position in positions:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, self.stream_id, _SAMPLE, position))
            augmentation.append(torch.rand(3, generator=generator))
            latent_noise.append(torch.randn(tuple(latent_shape), generator=generator))
            drawn_timesteps.append(draw_timestep(generator))
            noise.append(torch.randn(tuple(latent_shape), generator=generator))
            if forget_noise is not None:
                shifted.append(forget_noise.sample(tuple(latent_shape), generator=generator))
        return SampleDraws(
            item_indices=[self.item_index(p) for p in positions],
            augmentation=torch.stack(augmentation),
            latent_noise=torch.stack(latent_noise),
            timesteps=torch.stack(drawn_timesteps),
            noise=torch.stack(noise),
            forget_noise=torch.stack(shifted) if forget_noise is not None else None,
            empty_prompt=self._empty_prompt(positions, empty_prompt_probability),
        )

    def _empty_prompt(self, positions: Sequence[int], probability: float) -> torch.Tensor | None:
        if probability <= 0:
            return None
        uniforms = [
            torch.rand(
                (), generator=torch.Generator().manual_seed(derive_seed(self.seed, self.stream_id, _EMPTY_PROMPT, p))
            )
            for p in positions
        ]
        return torch.stack(uniforms) < probability
