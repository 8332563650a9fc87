"""How a family was trained to denoise, as one object the objective asks: which timesteps are drawn, how a
latent is noised, what the model regresses, and which noise a prediction implies (docs/method.md).

- ``DiffusionNoising`` (SD 1.x/2.x, SDXL): DDPM's discrete schedule, t uniform in [0, T),
  x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε, with an ε or v target.
- ``FlowMatchingNoising`` (SD3, FLUX): x_t = (1 − σ)·x₀ + σ·ε with the velocity target ε − x₀; σ is drawn as
  diffusers' SD3/FLUX training scripts draw it (``--weighting_scheme``, ``--logit_mean``, ``--logit_std``,
  ``--mode_scale``); sigma_sqrt/cosmap weight each sample's denoising loss, and ``--precondition_outputs``
  (the SD3 scripts' default) regresses x̂₀ = x_t − σ·v̂ onto x₀, which is the velocity loss weighted by σ².
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .objective import denoising_target, flow_implied_noise, flow_matching_noisy, implied_noise, velocity_target
from .options import FLOW_MATCHING_DEFAULTS


class DiffusionNoising:
    """DDPM's schedule with the scheduler's prediction type (epsilon or v_prediction)."""

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.prediction_type = scheduler.config.prediction_type
        self.num_train_timesteps = scheduler.config.num_train_timesteps

    def draw_timestep(self, generator: torch.Generator) -> torch.Tensor:
        """One integer timestep, uniform in [0, T)."""
        return torch.randint(0, self.num_train_timesteps, (), generator=generator)

    def draw_timesteps(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """``count`` integer timesteps in one draw (the attacks' batches)."""
        return torch.randint(self.num_train_timesteps, (count,), generator=generator)

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε (the scheduler's ``add_noise``)."""
        return self.scheduler.add_noise(latents, noise, timesteps)

    def target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """ε, or v = √ᾱ_t·ε − √(1−ᾱ_t)·x₀."""
        return denoising_target(latents, noise, timesteps, self.prediction_type, self.scheduler)

    def implied_noise(
        self, output: torch.Tensor, noisy_latents: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """ε̂: the output itself, or √ᾱ_t·v̂ + √(1−ᾱ_t)·x_t."""
        alphas_cumprod = self.scheduler.alphas_cumprod.to(timesteps.device)[timesteps]
        return implied_noise(output, noisy_latents, alphas_cumprod, self.prediction_type)

    def loss_weights(self, timesteps: torch.Tensor) -> torch.Tensor | None:
        """Every sample counts alike."""
        return None


@dataclass(frozen=True)
class TimestepSampling:
    """How σ is drawn and weighted under flow matching (the names of diffusers' SD3/FLUX scripts)."""

    weighting_scheme: str = "none"
    logit_mean: float = FLOW_MATCHING_DEFAULTS["logit_mean"]
    logit_std: float = FLOW_MATCHING_DEFAULTS["logit_std"]
    mode_scale: float = FLOW_MATCHING_DEFAULTS["mode_scale"]
    precondition_outputs: bool = False


class FlowMatchingNoising:
    """Flow matching on a ``FlowMatchEulerDiscreteScheduler``'s training sigmas: with its static shift where it
    has one (SD3's 3.0); a scheduler with dynamic shifting (FLUX.1 [dev]'s) shifts at inference only, so its
    training sigmas are unshifted, as in diffusers' FLUX script."""

    def __init__(self, scheduler, sampling: TimestepSampling = TimestepSampling()):
        self.scheduler, self.sampling = scheduler, sampling
        self.num_train_timesteps = scheduler.config.num_train_timesteps
        # The training schedule, as the scripts take it from a fresh copy of the scheduler: t = σ·T.
        self.schedule = scheduler.timesteps.clone().float()

    def draw_timestep(self, generator: torch.Generator) -> torch.Tensor:
        """One timestep t = σ·T: u from the weighting scheme's density, then the schedule's entry at ⌊u·T⌋."""
        from diffusers.training_utils import compute_density_for_timestep_sampling

        s = self.sampling
        u = compute_density_for_timestep_sampling(
            s.weighting_scheme, 1, s.logit_mean, s.logit_std, s.mode_scale, generator=generator
        )
        index = (u * self.num_train_timesteps).long().clamp(0, len(self.schedule) - 1)
        return self.schedule[index][0]

    def draw_timesteps(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """``count`` timesteps, one after another from ``generator``."""
        return torch.stack([self.draw_timestep(generator) for _ in range(count)])

    def sigmas(self, timesteps: torch.Tensor) -> torch.Tensor:
        """σ = t / T per sample."""
        return timesteps.float() / self.num_train_timesteps

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """x_t = (1 − σ)·x₀ + σ·ε."""
        return flow_matching_noisy(latents, noise, self.sigmas(timesteps).to(latents.device))

    def target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """v = ε − x₀."""
        return velocity_target(latents, noise)

    def implied_noise(
        self, output: torch.Tensor, noisy_latents: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """ε̂ = x_t + (1 − σ)·v̂."""
        return flow_implied_noise(output, noisy_latents, self.sigmas(timesteps).to(output.device))

    def loss_weights(self, timesteps: torch.Tensor) -> torch.Tensor | None:
        """sigma_sqrt: σ⁻²; cosmap: 2 / (π(1 − 2σ + 2σ²)); otherwise 1; times σ² with preconditioned outputs
        (‖x̂₀ − x₀‖² = σ²‖v̂ − v‖²). None when every sample counts alike."""
        from diffusers.training_utils import compute_loss_weighting_for_sd3

        scheme, sigmas = self.sampling.weighting_scheme, self.sigmas(timesteps)
        weights = compute_loss_weighting_for_sd3(scheme, sigmas) if scheme in ("sigma_sqrt", "cosmap") else None
        if self.sampling.precondition_outputs:
            weights = sigmas**2 if weights is None else weights * sigmas**2
        return weights


Noising = DiffusionNoising | FlowMatchingNoising


def training_noising(
    family, scheduler_class_name: str, scheduler_config, sampling: TimestepSampling | None = None
) -> Noising:
    """The training-noise convention of ``family`` (a ModelFamily) over a fresh scheduler made from the
    pipeline's scheduler config: DDPM's for SD and SDXL (a pipeline may ship DDIM or PNDM over the same betas),
    the pipeline's own flow-matching scheduler class for SD3 and FLUX."""
    import diffusers

    if family.flow_matching:
        scheduler = getattr(diffusers, scheduler_class_name).from_config(scheduler_config)
        default = TimestepSampling(
            family.default_weighting_scheme, precondition_outputs=family.default_precondition_outputs
        )
        return FlowMatchingNoising(scheduler, sampling or default)
    return DiffusionNoising(diffusers.DDPMScheduler.from_config(scheduler_config))
