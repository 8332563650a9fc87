"""One EraseDiff micro-step: draw the forget and remain micro-batches, run the UNet, and backpropagate
L_r + λf in one pass (fixed λ, or an adaptive λ between its refreshes) or ∇f and ∇L_r in two passes kept
apart (bome, cosine, on the steps that compute λ). With a teacher remain target, one more forward (no graph)
gives the frozen base model's prediction on the remain batch."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .families import ModelFamily, PromptEmbeddings, concatenated
from .gradients import ForgetGradientBuffer
from .latent_cache import EncodedImageSet
from .objective import (
    ForgetNoise,
    SumAcross,
    anchor_loss,
    estimate_forget_minimum,
    neggrad_loss,
    relearned_forget_gradient,
    remain_loss,
    shifted_noise_loss,
    teacher_remain_loss,
)
from .options import DEFAULT_ETA, DEFAULT_LAMBDA_MODE, DEFAULT_LAMBDA_VALUE, DEFAULT_REMAIN_TARGET
from .randomness import SampleStream, global_positions
from .teacher import FrozenTeacher


@dataclass(frozen=True)
class ErasureSettings:
    """The objective's settings (DESIGN.md §2), fixed for a run."""

    forget_target: str = "shifted_noise"
    forget_noise: ForgetNoise = ForgetNoise()
    lambda_mode: str = DEFAULT_LAMBDA_MODE
    lambda_value: float = DEFAULT_LAMBDA_VALUE
    eta: float = DEFAULT_ETA
    remain_target: str = DEFAULT_REMAIN_TARGET
    # Relearning resistance (docs/robustness.md): f is also taken after this many simulated relearning steps.
    relearn_steps: int = 0
    relearn_step_size: float = 1e-4
    relearn_weight: float = 1.0

    @property
    def uses_teacher(self) -> bool:
        """Whether L_r needs the frozen base model's prediction."""
        return self.remain_target in ("teacher", "both")

    @property
    def adaptive(self) -> bool:
        """Whether λ is computed from the gradients (two backward passes) rather than fixed."""
        return self.lambda_mode != "fixed"


@dataclass
class MicroBatch:
    """One set's samples for one micro-step, noised and ready for the denoiser."""

    latents: torch.Tensor
    prompt_embeds: PromptEmbeddings
    noisy_latents: torch.Tensor
    timesteps: torch.Tensor
    noise: torch.Tensor
    forget_noise: torch.Tensor | None
    time_ids: torch.Tensor | None = None  # SDXL's micro-conditioning

    def __len__(self) -> int:
        return self.latents.shape[0]


def joined(batches: list[MicroBatch]) -> MicroBatch:
    """The micro-batches as one, in order."""

    def cat(values):
        return None if values[0] is None else torch.cat(values)

    return MicroBatch(
        latents=cat([b.latents for b in batches]),
        prompt_embeds=concatenated([b.prompt_embeds for b in batches]),
        noisy_latents=cat([b.noisy_latents for b in batches]),
        timesteps=cat([b.timesteps for b in batches]),
        noise=cat([b.noise for b in batches]),
        forget_noise=cat([b.forget_noise for b in batches]),
        time_ids=cat([b.time_ids for b in batches]),
    )


def with_adversarial_conditions(forget: MicroBatch, conditions: PromptEmbeddings) -> MicroBatch:
    """The forget micro-batch followed by the same noised samples under the adversarial conditions (sample i
    takes condition i modulo their number), so f averages over both (pipelines/adversarial.py)."""
    chosen = conditions.select([i % len(conditions.hidden) for i in range(len(forget))])
    return joined([forget, replace(forget, prompt_embeds=chosen)])


def draw_micro_batch(
    data: EncodedImageSet,
    stream: SampleStream,
    positions: list[int],
    noising,
    device,
    forget_noise: ForgetNoise | None = None,
) -> MicroBatch:
    """Looks up the cached inputs of the samples at ``positions`` and noises them with their own draws, by
    the family's training-noise convention ``noising`` (pipelines/noising.py)."""
    draws = stream.draw(positions, data.latent_shape, noising, forget_noise, data.empty_prompt_probability)
    latents, embeds, batch_time_ids = data.batch(draws, device)
    noise = draws.noise.to(device)
    timesteps = draws.timesteps.to(device)
    return MicroBatch(
        latents=latents,
        prompt_embeds=embeds,
        noisy_latents=noising.add_noise(latents, noise, timesteps),
        timesteps=timesteps,
        noise=noise,
        forget_noise=None if draws.forget_noise is None else draws.forget_noise.to(device),
        time_ids=batch_time_ids,
    )


def predict(
    family: ModelFamily,
    unet,
    batches: list[MicroBatch],
    dtype: torch.dtype,
    prompt_embeds: list[PromptEmbeddings] | None = None,
) -> list[torch.Tensor]:
    """One denoiser forward over the concatenated batches (optionally with other prompt embeddings), split
    back; the family says what the denoiser takes."""
    embeds = prompt_embeds if prompt_embeds is not None else [b.prompt_embeds for b in batches]
    batch_time_ids = None if batches[0].time_ids is None else torch.cat([b.time_ids for b in batches])
    output = family.denoise(
        unet,
        torch.cat([b.noisy_latents for b in batches]),
        torch.cat([b.timesteps for b in batches]),
        concatenated(embeds),
        batch_time_ids,
        dtype,
    )
    return list(output.split([len(b) for b in batches]))


def denoising_loss_of(batch: MicroBatch, output: torch.Tensor, noising) -> torch.Tensor:
    """The ordinary denoising loss of a micro-batch: the family's target (ε, v, or the velocity ε − x₀),
    weighted per sample as its training scripts weight it."""
    target = noising.target(batch.latents, batch.noise, batch.timesteps)
    return remain_loss(output, target, noising.loss_weights(batch.timesteps))


def remain_loss_of(
    batch: MicroBatch,
    output: torch.Tensor,
    noising,
    settings: ErasureSettings,
    teacher_output: torch.Tensor | None = None,
) -> torch.Tensor:
    """L_r of a remain micro-batch from the denoiser's output on it, for the configured remain target: the
    data's denoising target, the frozen base model's prediction (teacher), or the mean of both losses."""
    weights = noising.loss_weights(batch.timesteps)
    if settings.remain_target == "teacher":
        return teacher_remain_loss(output, teacher_output, weights)
    data_loss = denoising_loss_of(batch, output, noising)
    if settings.remain_target == "data":
        return data_loss
    if settings.remain_target == "both":
        return 0.5 * (data_loss + teacher_remain_loss(output, teacher_output, weights))
    raise ValueError(f"unknown remain target {settings.remain_target!r}")


def anchor_prediction(
    family: ModelFamily, unet, batch: MicroBatch, anchor_embeds: PromptEmbeddings, dtype: torch.dtype
) -> torch.Tensor:
    """sg[model_θ(z_t, t, c_anchor)], computed without building a graph."""
    with torch.no_grad():
        return predict(family, unet, [batch], dtype, [anchor_embeds.expand(len(batch))])[0]


def forget_loss_of(
    batch: MicroBatch,
    output: torch.Tensor,
    noising,
    settings: ErasureSettings,
    anchor_output: torch.Tensor | None = None,
) -> torch.Tensor:
    """f of a forget micro-batch from the denoiser's output on it, for the configured forget target; the
    shifted-noise loss regresses the implied noise, whatever the family's parameterisation."""
    if settings.forget_target == "shifted_noise":
        predicted = noising.implied_noise(output.float(), batch.noisy_latents.float(), batch.timesteps)
        return shifted_noise_loss(predicted, batch.forget_noise)
    if settings.forget_target == "anchor":
        return anchor_loss(output, anchor_output)
    if settings.forget_target == "neggrad":
        target = noising.target(batch.latents, batch.noise, batch.timesteps)
        return neggrad_loss(output, target, noising.loss_weights(batch.timesteps))
    raise ValueError(f"unknown forget target {settings.forget_target!r}")


class ErasureStep:
    """Runs the forward and backward passes of one micro-step under ``accelerator.accumulate``."""

    def __init__(
        self,
        accelerator,
        unet,
        family: ModelFamily,
        noising,
        settings: ErasureSettings,
        forget_set: EncodedImageSet,
        remain_set: EncodedImageSet,
        forget_stream: SampleStream,
        remain_stream: SampleStream,
        forget_batch_size: int,
        remain_batch_size: int,
        trainable_parameters: list[torch.nn.Parameter],
        model_dtype: torch.dtype,
        anchor_embeds: PromptEmbeddings | None = None,
        teacher: FrozenTeacher | None = None,
        gradient_sum_across: SumAcross | None = None,
    ):
        """``family`` says what the denoiser takes, ``noising`` how it was trained to denoise
        (pipelines/noising.py); ``gradient_sum_across`` adds λ's sums over processes when the gradients are
        sharded (FSDP2)."""
        self.accelerator, self.unet, self.settings = accelerator, unet, settings
        self.family, self.noising = family, noising
        self.forget_set, self.remain_set = forget_set, remain_set
        self.forget_stream, self.remain_stream = forget_stream, remain_stream
        self.forget_batch_size, self.remain_batch_size = forget_batch_size, remain_batch_size
        self.model_dtype, self.anchor_embeds, self.teacher = model_dtype, anchor_embeds, teacher
        if settings.uses_teacher and teacher is None:
            raise ValueError(f"--remain_target {settings.remain_target} needs a FrozenTeacher")
        self.trainable_parameters = trainable_parameters
        self.unwrapped = accelerator.unwrap_model(unet)  # the module itself, for the teacher and the f* estimate
        self.forget_buffer = (
            ForgetGradientBuffer(trainable_parameters, gradient_sum_across) if settings.adaptive else None
        )
        # The adaptive λ of the last step that computed it, used until the next refresh (and checkpointed).
        self.last_lambda = settings.lambda_value if not settings.adaptive else 0.0
        # Set by adversarial erasure: forget conditions with the adversary's word, added to every forget batch.
        self.adversarial_conditions: PromptEmbeddings | None = None

    def draw(self, micro_batch_index: int) -> tuple[MicroBatch, MicroBatch]:
        """This process's forget and remain micro-batches for global micro-batch ``micro_batch_index``."""
        rank, world, device = self.accelerator.process_index, self.accelerator.num_processes, self.accelerator.device
        forget = draw_micro_batch(
            self.forget_set,
            self.forget_stream,
            global_positions(micro_batch_index, rank, world, self.forget_batch_size),
            self.noising,
            device,
            self.settings.forget_noise,
        )
        remain = draw_micro_batch(
            self.remain_set,
            self.remain_stream,
            global_positions(micro_batch_index, rank, world, self.remain_batch_size),
            self.noising,
            device,
        )
        return forget, remain

    def teacher_prediction(self, remain: MicroBatch) -> torch.Tensor | None:
        """sg[model_θ₀(z_t, t, c_r)] on the remain micro-batch, when the remain target needs it."""
        if not self.settings.uses_teacher:
            return None
        return self.teacher.predict(
            self.unwrapped,
            lambda call: predict(self.family, call, [remain], self.model_dtype)[0],
            self.accelerator.autocast,
        )

    def run(self, micro_batch_index: int, refresh: bool = True) -> tuple[torch.Tensor, torch.Tensor, MicroBatch]:
        """Forward and backward for one micro-step; returns detached (L_r, f) and the forget micro-batch.
        ``refresh`` (adaptive λ only): keep ∇f apart so that weigh_gradients computes λ; otherwise one pass
        backpropagates L_r + λf with the last λ."""
        forget, remain = self.draw(micro_batch_index)
        if self.adversarial_conditions is not None:
            forget = with_adversarial_conditions(forget, self.adversarial_conditions)
        anchor_output = (
            anchor_prediction(self.family, self.unet, forget, self.anchor_embeds, self.model_dtype)
            if self.settings.forget_target == "anchor"
            else None
        )
        teacher_output = self.teacher_prediction(remain)
        if not (self.settings.adaptive and refresh):
            remain_output, forget_output = predict(self.family, self.unet, [remain, forget], self.model_dtype)
            remain_value = remain_loss_of(remain, remain_output, self.noising, self.settings, teacher_output)
            forget_value = forget_loss_of(forget, forget_output, self.noising, self.settings, anchor_output)
            self.accelerator.backward(remain_value + self.last_lambda * forget_value)
            self.add_relearned_forget_gradient(forget, anchor_output, self.last_lambda)
            return remain_value.detach(), forget_value.detach(), forget
        with self.forget_buffer.collecting_forget():
            forget_output = predict(self.family, self.unet, [forget], self.model_dtype)[0]
            forget_value = forget_loss_of(forget, forget_output, self.noising, self.settings, anchor_output)
            self.accelerator.backward(forget_value)
            self.add_relearned_forget_gradient(forget, anchor_output, 1.0)
        remain_output = predict(self.family, self.unet, [remain], self.model_dtype)[0]
        remain_value = remain_loss_of(remain, remain_output, self.noising, self.settings, teacher_output)
        self.accelerator.backward(remain_value)
        return remain_value.detach(), forget_value.detach(), forget

    def add_relearned_forget_gradient(
        self, forget: MicroBatch, anchor_output: torch.Tensor | None, scale: float
    ) -> None:
        """Relearning resistance: adds ``scale`` · w · ∇f(θ_K) to ``.grad`` (inside ``collecting_forget``: to
        ∇f), θ_K being θ after the simulated relearning steps on this forget micro-batch (the attacker's
        denoising loss under the forget prompts). Averaged over processes, since no DDP hook sees it."""
        settings = self.settings
        if settings.relearn_steps == 0 or scale == 0:
            return
        unet = self.unwrapped

        def relearn_loss() -> torch.Tensor:
            with self.accelerator.autocast():
                output = predict(self.family, unet, [forget], self.model_dtype)[0]
                return denoising_loss_of(forget, output, self.noising)

        def forget_value() -> torch.Tensor:
            with self.accelerator.autocast():
                output = predict(self.family, unet, [forget], self.model_dtype)[0]
                return forget_loss_of(forget, output, self.noising, settings, anchor_output)

        gradients = relearned_forget_gradient(
            self.trainable_parameters, relearn_loss, forget_value, settings.relearn_steps, settings.relearn_step_size
        )
        # Scaled as accelerator.backward scales each micro-step's loss.
        weight = scale * settings.relearn_weight / self.accelerator.gradient_accumulation_steps
        with torch.no_grad():
            for parameter, gradient in zip(self.trainable_parameters, gradients):
                if gradient is None:
                    continue
                if self.accelerator.num_processes > 1:
                    gradient = self.accelerator.reduce(gradient, reduction="mean")
                gradient = gradient.to(parameter.dtype) * weight
                parameter.grad = gradient if parameter.grad is None else parameter.grad.add_(gradient)

    def weigh_gradients(self, refresh: bool = True) -> torch.Tensor:
        """After the last micro-step of an optimizer step: leaves ∇L_r + λ∇f in ``.grad`` and returns λ
        (computed now if the step's micro-steps ran with ``refresh``, else the last one)."""
        if self.forget_buffer is None or not refresh:
            return torch.tensor(self.last_lambda)
        lam = self.forget_buffer.apply_lambda(self.settings.lambda_mode, self.settings.eta)
        self.last_lambda = float(lam)
        return lam

    def estimate_forget_minimum(self, forget: MicroBatch, inner_steps: int, inner_learning_rate: float) -> float:
        """The paper's K-step estimate of f* on this forget micro-batch (parameters restored afterwards)."""
        unet = self.unwrapped

        def forget_value() -> torch.Tensor:
            anchor_output = (
                anchor_prediction(self.family, unet, forget, self.anchor_embeds, self.model_dtype)
                if self.settings.forget_target == "anchor"
                else None
            )
            with self.accelerator.autocast():
                return forget_loss_of(
                    forget,
                    predict(self.family, unet, [forget], self.model_dtype)[0],
                    self.noising,
                    self.settings,
                    anchor_output,
                )

        return estimate_forget_minimum(self.trainable_parameters, forget_value, inner_steps, inner_learning_rate)
