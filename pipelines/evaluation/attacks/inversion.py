"""Concept inversion (Pham et al., "Circumventing Concept Erasure Methods for Text-to-Image Generative
Models", ICLR 2024): textual inversion against the erased model. One new word is trained, with the model
frozen, to minimise the ordinary denoising loss on the attacker's concept images, in the forget prompts'
place of the concept ("a painting in the style of <inverted-0>"); then the model draws with it. If the
erased weights still hold the concept, some input reaches it, and the word finds that input."""

from __future__ import annotations

import torch

from ...families import denoiser_of
from ...learned_tokens import pipeline_with_tokens
from .denoising import denoiser_output, denoising_loss, learned_tokens_for, train_tokens


def invert(
    context, latents: torch.Tensor, captions: list[str], seed: int
) -> tuple[list[str], list, list[float], dict]:
    """Trains the word on ``latents`` (textual inversion ignores their captions: the word is the caption); returns the prompts drawn with it, their images, the losses and the
    word's state."""
    tokens = learned_tokens_for(context.attacked, 1, "inverted", seed)
    templates, unet, settings = context.templates, denoiser_of(context.attacked), context.settings

    def loss_of(batch, generator):
        chosen = torch.randint(len(templates), (len(batch.latents),), generator=generator).tolist()
        embeds = tokens.embed([templates[i].format(tokens.phrase()) for i in chosen], context.device)
        output = denoiser_output(context.family, unet, batch, embeds, context.resolution)
        return denoising_loss(output, batch, context.noising)

    losses = train_tokens(
        tokens, loss_of, latents, settings.steps, settings.learning_rate, settings.batch_size, context.noising, seed
    )
    prompts = [t.format(tokens.phrase()) for t in templates]
    return prompts, context.generate(pipeline_with_tokens(context.attacked, tokens), prompts), losses, tokens.state()


def run_inversion(context) -> tuple[dict, dict]:
    """The word learned on the concept images, and the control: the same training on the control images."""
    return context.token_attack_result("inversion", invert)
