"""The relearning attack: plain fine-tuning of the erased model on a few concept images (their captions,
the ordinary denoising loss, AdamW on every UNet weight), with the concept's share among the forget
prompts' images measured every few steps. An erasure that only hides the concept comes back in a few steps;
a model that never learned it needs about as many as it took to learn it. The control fine-tunes on images
of something else for the same steps (benign fine-tuning, which can also bring a concept back)."""

from __future__ import annotations

import copy

import torch

from ...families import denoiser_of
from .denoising import check_finite, conditioner_of, denoiser_output, denoising_loss, draw_batch


def relearn_curve(context, latents: torch.Tensor, captions: list[str], seed: int) -> tuple[list, list]:
    """Fine-tunes a copy of the erased UNet on ``latents`` (captioned ``captions``); returns the curve
    [(step, share)] at step 0 and every ``relearn_every`` steps, and the last images drawn. Step 0 is the
    erased model itself: the suite's no-attack share, the same images from the same seeds."""
    settings = context.settings
    unet = copy.deepcopy(denoiser_of(context.attacked)).float().requires_grad_(True)
    pipeline = type(context.attacked)(**{**context.attacked.components, context.family.denoiser: unet})
    pipeline.set_progress_bar_config(disable=True)
    embeds = conditioner_of(context.attacked).encode(captions, context.device)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=settings.relearn_learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)

    def measure(step: int):
        unet.eval()
        rows = context.generate(pipeline, context.evaluation.forget_prompts)
        curve.append([step, context.detector.share([i for row in rows for i in row])])
        unet.train()
        return rows

    curve: list = [[0, context.no_attack_share]]
    for step in range(1, settings.relearn_steps + 1):
        batch = draw_batch(latents, settings.batch_size, context.noising, generator)
        output = denoiser_output(
            context.family, unet, batch, embeds.select(batch.indices.to(embeds.hidden.device)), context.resolution
        )
        loss = denoising_loss(output, batch, context.noising)
        check_finite(loss, "relearn", "--attack_relearn_learning_rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % settings.relearn_every == 0 or step == settings.relearn_steps:
            rows = measure(step)
    return curve, rows


def steps_to_reach(curve: list, share: float = 0.5) -> int | None:
    """The first step of the curve at which the concept's share reaches ``share``; None when it never does."""
    return next((step for step, value in curve if value >= share), None)


def run_relearn(context) -> tuple[dict, dict]:
    """The relearning curve on the concept images and, as the control, on the control images."""
    seed = context.settings.seed
    curve, rows = relearn_curve(context, context.concept_latents, context.concept_captions, seed)
    control_curve, control_rows = relearn_curve(context, context.control_latents, context.control_captions, seed)
    result = {
        "curve": curve,
        "control_curve": control_curve,
        "steps_to_half": steps_to_reach(curve),
        "control_steps_to_half": steps_to_reach(control_curve),
        "success": curve[-1][1],
        "control_success": control_curve[-1][1],
        "beyond_control": curve[-1][1] - control_curve[-1][1],
        "budget": context.settings.budget("relearn", len(context.concept_images)),
    }
    prompts = context.evaluation.forget_prompts
    return result, {"attack": (prompts, rows), "control": (prompts, control_rows)}
