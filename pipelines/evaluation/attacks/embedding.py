"""The embedding attack, in the spirit of UnlearnDiffAtk (Zhang et al., ECCV 2024): a few token vectors put in
front of each forget prompt are optimised, with the erased model frozen, so that its denoising of the
attacker's concept images matches what the original model predicts on the same noised images under the
plain prompt. The attacker holds the original model and images of the concept; where the erased model can
still be steered back to the original's behaviour, the prompt it is steered with draws the concept."""

from __future__ import annotations

import torch

from ...families import denoiser_of
from ...learned_tokens import pipeline_with_tokens
from .denoising import conditioner_of, denoiser_output, learned_tokens_for, train_tokens


def steer(context, latents: torch.Tensor, captions: list[str], seed: int) -> tuple[list[str], list, list[float], dict]:
    """Trains the tokens on ``latents``: in front of forget prompt i, they make the erased model denoise
    image i as the original model does under its caption (the forget prompt itself for concept images, what
    they show for the control's); returns the prompts drawn with them, their images, the losses and the
    tokens' state."""
    settings, forget_prompts = context.settings, context.evaluation.forget_prompts
    tokens = learned_tokens_for(context.attacked, settings.embedding_tokens, "adversarial", seed)
    base_conditioner = conditioner_of(context.base)
    original_embeds = base_conditioner.encode(captions, context.device)

    def loss_of(batch, generator):
        indices = batch.indices.tolist()
        with torch.no_grad():
            original = denoiser_output(
                context.family,
                denoiser_of(context.base),
                batch,
                original_embeds.select(batch.indices),
                context.resolution,
            )
        prompts = [f"{tokens.phrase()} {forget_prompts[i % len(forget_prompts)]}" for i in indices]
        output = denoiser_output(
            context.family,
            denoiser_of(context.attacked),
            batch,
            tokens.embed(prompts, context.device),
            context.resolution,
        )
        return torch.nn.functional.mse_loss(output, original)

    losses = train_tokens(
        tokens, loss_of, latents, settings.steps, settings.learning_rate, settings.batch_size, context.noising, seed
    )
    prompts = [f"{tokens.phrase()} {p}" for p in forget_prompts]
    return prompts, context.generate(pipeline_with_tokens(context.attacked, tokens), prompts), losses, tokens.state()


def run_embedding(context) -> tuple[dict, dict]:
    """The tokens optimised on the concept images, and the control: the same optimisation on the control images, towards what the
    original model does with their own captions."""
    return context.token_attack_result("embedding", steer)
