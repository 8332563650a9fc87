"""The EraseDiff objective as plain functions of tensors (docs/method.md maps each to its equation).

Notation (paper, Algorithm 1): L_r is the remain loss, f the forget loss, f* its minimum,
q = f - f* the constraint gap and λ the weight of ∇q in the update ∇L_r + λ∇q.
Nothing here reads files or touches the network.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from .options import DEFAULT_FORGET_NOISE_MEAN, DEFAULT_FORGET_NOISE_STD, FORGET_NOISES, PREDICTION_TYPES

# Below this squared norm ∇q counts as zero and λ is 0 (DESIGN.md §2).
ZERO_GRADIENT_NORM_SQUARED = 1e-24


@dataclass(frozen=True)
class ForgetNoise:
    """The distribution of ε_f: uniform or Gaussian with mean ``mean`` and standard deviation ``std``."""

    kind: str = "uniform"
    mean: float = DEFAULT_FORGET_NOISE_MEAN
    std: float = DEFAULT_FORGET_NOISE_STD

    def sample(self, shape: Sequence[int], generator: torch.Generator | None = None) -> torch.Tensor:
        """Draws ε_f on the CPU (the caller moves it), so draws do not depend on the device."""
        if self.kind == "uniform":
            # A uniform with std σ spans √12·σ; centred on the mean.
            width = math.sqrt(12.0) * self.std
            return (torch.rand(shape, generator=generator) - 0.5) * width + self.mean
        if self.kind == "gaussian":
            return torch.randn(shape, generator=generator) * self.std + self.mean
        raise ValueError(f"unknown forget noise {self.kind!r}; choose from {FORGET_NOISES}")


def denoising_target(
    latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, prediction_type: str, scheduler
) -> torch.Tensor:
    """The ordinary regression target: ε for epsilon models, v = √ᾱ_t ε − √(1−ᾱ_t) z for v_prediction."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"unknown prediction type {prediction_type!r}; choose from {PREDICTION_TYPES}")


def implied_noise(
    model_output: torch.Tensor,
    noisy_latents: torch.Tensor,
    alphas_cumprod_t: torch.Tensor,
    prediction_type: str,
) -> torch.Tensor:
    """ε̂_θ: the output itself for epsilon models, √ᾱ_t·v̂ + √(1−ᾱ_t)·x_t for v_prediction models.

    ``alphas_cumprod_t`` holds ᾱ_t per sample (shape [B]).
    """
    if prediction_type == "epsilon":
        return model_output
    if prediction_type == "v_prediction":
        alpha_bar = alphas_cumprod_t.to(model_output.dtype).view(-1, *([1] * (model_output.dim() - 1)))
        return alpha_bar.sqrt() * model_output + (1.0 - alpha_bar).sqrt() * noisy_latents
    raise ValueError(f"unknown prediction type {prediction_type!r}; choose from {PREDICTION_TYPES}")


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[B] values shaped to broadcast over ``like`` [B, ...]."""
    return values.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


def flow_matching_noisy(latents: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """x_t = (1 − σ)·x₀ + σ·ε, the flow-matching interpolation (SD3, FLUX); ``sigmas`` holds σ per sample [B]."""
    sigma = _per_sample(sigmas, latents)
    return (1.0 - sigma) * latents + sigma * noise


def velocity_target(latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The flow-matching regression target v = dx_t/dσ = ε − x₀."""
    return noise - latents


def flow_implied_noise(model_output: torch.Tensor, noisy_latents: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """ε̂_θ = x_t + (1 − σ)·v̂: the noise a velocity prediction implies (x_t = x₀ + σv and ε = x₀ + v)."""
    return noisy_latents + (1.0 - _per_sample(sigmas, model_output)) * model_output


def _mean_squared_error(output: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return F.mse_loss(output.float(), target.float())
    squared = (output.float() - target.float()) ** 2
    return (_per_sample(weights.float(), squared) * squared).mean()


def remain_loss(model_output: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """L_r = E‖target(z_r, ε, t) − model_θ(z_t, t, c_r)‖², averaged over elements; with flow matching's loss
    ``weights`` (one per sample, ``--weighting_scheme``), each sample's squared error is weighted."""
    return _mean_squared_error(model_output, target, weights)


def teacher_remain_loss(
    model_output: torch.Tensor, teacher_output: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """L_r = E‖model_θ(z_t, t, c_r) − sg[model_θ₀(z_t, t, c_r)]‖²: the frozen base model's prediction is the
    target, so θ₀ itself is the minimiser (``--remain_target teacher``)."""
    return _mean_squared_error(model_output, teacher_output.detach(), weights)


def shifted_noise_loss(predicted_noise: torch.Tensor, forget_noise: torch.Tensor) -> torch.Tensor:
    """f(θ) = E‖ε_f − ε̂_θ(√ᾱ_t z_f + √(1−ᾱ_t) ε, t, c_f)‖² (paper Eq. 2), averaged over elements."""
    return F.mse_loss(predicted_noise.float(), forget_noise.float())


def anchor_loss(model_output: torch.Tensor, anchor_output: torch.Tensor) -> torch.Tensor:
    """f(θ) = E‖model_θ(z_t, t, c_f) − sg[model_θ(z_t, t, c_anchor)]‖²; the anchor carries no gradient."""
    return F.mse_loss(model_output.float(), anchor_output.detach().float())


def neggrad_loss(
    model_output: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """The gradient-ascent baseline: f(θ) = −L_denoise(D_f). It has no minimum."""
    return -_mean_squared_error(model_output, target, weights)


def known_forget_minimum(forget_target: str, forget_noise: ForgetNoise) -> float | None:
    """f* in closed form where it exists: σ² per element for shifted_noise (ε_f is independent of the
    input, so the best prediction is its mean), 0 for anchor, none for neggrad."""
    if forget_target == "shifted_noise":
        return forget_noise.std**2
    if forget_target == "anchor":
        return 0.0
    return None


def constraint_gap(forget_value: torch.Tensor | float, forget_minimum: torch.Tensor | float) -> torch.Tensor | float:
    """q(θ) = f(θ) − f*."""
    return forget_value - forget_minimum


SumAcross = Callable[[torch.Tensor], torch.Tensor]


def local_part(tensor: torch.Tensor) -> torch.Tensor:
    """This process's shard of a gradient: a DTensor's local tensor (FSDP2), any other tensor whole."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def _norm_squared(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([n.float() for n in torch._foreach_norm(tensors)]).pow(2).sum()


def gradient_sums(
    remain_grads: Sequence[torch.Tensor],
    gap_grads: Sequence[torch.Tensor],
    sum_across: SumAcross | None = None,
    remain_norm: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(⟨∇L_r, ∇q⟩, ‖∇q‖², ‖∇L_r‖²) over all parameter tensors (‖∇L_r‖² is 0 unless ``remain_norm``).

    With sharded gradients (FSDP) each process sums its own shards and ``sum_across`` adds the three
    scalars over the processes, one all-reduce of three numbers instead of a gathered gradient. Every
    element must be counted equally often: once, or R times when shards are replicated R times (hybrid
    sharding), which scales all three sums alike and leaves both λ rules unchanged. Without ``sum_across``
    the tensors are taken as whole.
    """
    remain = [local_part(g) for g in remain_grads]
    gap = [local_part(g) for g in gap_grads]
    dot = torch.stack([torch.dot(a.reshape(-1).float(), b.reshape(-1).float()) for a, b in zip(remain, gap)]).sum()
    sums = torch.stack([dot, _norm_squared(gap), _norm_squared(remain) if remain_norm else torch.zeros_like(dot)])
    if sum_across is not None:
        sums = sum_across(sums)
    return sums[0], sums[1], sums[2]


def bome_lambda(
    remain_grads: Sequence[torch.Tensor],
    gap_grads: Sequence[torch.Tensor],
    eta: float,
    sum_across: SumAcross | None = None,
) -> torch.Tensor:
    """λ = max(η‖∇q‖² − ⟨∇L_r, ∇q⟩, 0) / ‖∇q‖² (BOME!), and 0 where ∇q vanishes."""
    dot, gap_norm_sq, _ = gradient_sums(remain_grads, gap_grads, sum_across, remain_norm=False)
    if gap_norm_sq <= ZERO_GRADIENT_NORM_SQUARED:
        return torch.zeros((), device=gap_norm_sq.device)
    return torch.clamp(eta * gap_norm_sq - dot, min=0.0) / gap_norm_sq


def cosine_lambda(
    remain_grads: Sequence[torch.Tensor],
    gap_grads: Sequence[torch.Tensor],
    eta: float,
    sum_across: SumAcross | None = None,
) -> torch.Tensor:
    """λ = max(η − cos(∇L_r, ∇q), 0), the official code's rule, and 0 where ∇q vanishes."""
    dot, gap_norm_sq, remain_norm_sq = gradient_sums(remain_grads, gap_grads, sum_across)
    if gap_norm_sq <= ZERO_GRADIENT_NORM_SQUARED:
        return torch.zeros((), device=gap_norm_sq.device)
    denominator = (gap_norm_sq * remain_norm_sq).sqrt()
    cosine = dot / denominator if denominator > 0 else torch.zeros_like(denominator)
    return torch.clamp(eta - cosine, min=0.0)


def adaptive_lambda(
    mode: str,
    remain_grads: Sequence[torch.Tensor],
    gap_grads: Sequence[torch.Tensor],
    eta: float,
    sum_across: SumAcross | None = None,
) -> torch.Tensor:
    """Dispatches to the λ rule named by ``mode`` ("bome" or "cosine"); ``sum_across`` as in
    :func:`gradient_sums`."""
    if mode == "bome":
        return bome_lambda(remain_grads, gap_grads, eta, sum_across)
    if mode == "cosine":
        return cosine_lambda(remain_grads, gap_grads, eta, sum_across)
    raise ValueError(f"{mode!r} is not an adaptive λ rule; choose bome or cosine")


def combine_gradients(
    remain_grads: Sequence[torch.Tensor], gap_grads: Sequence[torch.Tensor], lam: torch.Tensor | float
) -> None:
    """Writes ∇L_r + λ∇q into ``remain_grads`` in place (∇q = ∇f because f* is a constant)."""
    lam = float(lam)
    if lam != 0.0:
        torch._foreach_add_(list(remain_grads), list(gap_grads), alpha=lam)


@contextmanager
def restored_afterwards(parameters: Sequence[torch.nn.Parameter]) -> Iterator[None]:
    """Runs the block on the live parameters, then puts their values back exactly (``.grad`` untouched)."""
    saved_values = [p.detach().clone() for p in parameters]
    try:
        yield
    finally:
        with torch.no_grad():
            for parameter, saved in zip(parameters, saved_values):
                parameter.copy_(saved)


def _descend(parameters: Sequence[torch.nn.Parameter], loss: torch.Tensor, step_of: Callable) -> None:
    """One in-place step θ ← θ − step_of(∇loss), with gradients from ``torch.autograd.grad`` so that no
    gradient hook (DDP's included) sees them."""
    grads = torch.autograd.grad(loss, parameters, allow_unused=True)
    with torch.no_grad():
        for parameter, grad in zip(parameters, grads):
            if grad is not None:
                parameter.sub_(step_of(grad).to(parameter.dtype))


def estimate_forget_minimum(
    parameters: Sequence[torch.nn.Parameter],
    forget_value_fn: Callable[[], torch.Tensor],
    inner_steps: int,
    inner_learning_rate: float,
) -> float:
    """The paper's estimate of f*: f(θ^K) after K gradient steps on f from θ.

    The steps run with their own SGD state on the live parameters and are undone before returning:
    parameter values, their ``.grad`` and any outer optimizer state are exactly as they were. Because no λ
    rule reads f*, this only measures the constraint gap; it never changes the update.
    """
    parameters = list(parameters)
    with restored_afterwards(parameters):
        for _ in range(inner_steps):
            _descend(parameters, forget_value_fn(), lambda grad: inner_learning_rate * grad)
        with torch.no_grad():
            return float(forget_value_fn())


def relearned_forget_gradient(
    parameters: Sequence[torch.nn.Parameter],
    relearn_loss_fn: Callable[[], torch.Tensor],
    forget_value_fn: Callable[[], torch.Tensor],
    steps: int,
    step_size: float,
) -> list[torch.Tensor | None]:
    """∇f at θ_K, where θ_K is θ after K simulated relearning steps: θ ← θ − α·sign(∇L_relearn), the first
    steps Adam takes on the relearning loss (the attacker's plain denoising loss on forget data).

    Added to ∇f, this is the first-order form of meta-unlearning (as first-order MAML): it moves θ to where
    f stays low even after an attacker's fine-tuning steps. Like ``estimate_forget_minimum``, the steps run on
    the live parameters and are undone exactly before returning.
    """
    parameters = list(parameters)
    with restored_afterwards(parameters):
        for _ in range(steps):
            _descend(parameters, relearn_loss_fn(), lambda grad: step_size * grad.sign())
        return list(torch.autograd.grad(forget_value_fn(), parameters, allow_unused=True))
