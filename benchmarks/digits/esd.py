#!/usr/bin/env python
"""ESD (Gandikota et al., "Erasing Concepts from Diffusion Models", ICCV 2023), written from the paper as a
baseline for the digits benchmark; it is not part of the training script.

ESD fine-tunes the model θ so that, on latents it partially sampled itself, its noise prediction for the
concept c follows negative guidance away from c under the frozen model θ*:

    target = ε_θ*(x_t, t) − η · (ε_θ*(x_t, c, t) − ε_θ*(x_t, t)),   loss = ‖ε_θ(x_t, c, t) − target‖²

Each iteration draws how far to sample (0 to SAMPLING_STEPS − 1 DDIM steps from pure noise, with θ and
guidance), takes x_t there and t the schedule's next timestep. ESD-x trains the cross-attention
(``attn2``), ESD-u everything else (pipelines/trainable.py's ``noxattn``). The settings are the issue's,
fixed for every digit and seed, not tuned:

    python -m benchmarks.digits.esd --digit 3 --seed 0 --parameters xattn --output_dir /tmp/esd-x-3
"""

from __future__ import annotations

import argparse
import copy
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

ITERATIONS = 300
LEARNING_RATE = 1e-4
BATCH_SIZE = 1
SAMPLING_STEPS = 10
NEGATIVE_GUIDANCE = 1.0
PARAMETERS = {"xattn": "ESD-x", "noxattn": "ESD-u"}


def erase_with_esd(
    pipeline, prompt: str, parameters: str, seed: int, sampling_guidance: float, iterations: int = ITERATIONS
) -> None:
    """Fine-tunes ``pipeline.unet`` in place with ESD to erase ``prompt``; ``parameters`` is "xattn" (ESD-x)
    or "noxattn" (ESD-u)."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDIMScheduler

    from pipelines.trainable import select_trainable_parameters

    torch.manual_seed(seed)
    unet = pipeline.unet
    frozen = copy.deepcopy(unet).requires_grad_(False).eval()
    trainable = select_trainable_parameters(unet, parameters)
    optimizer = torch.optim.Adam(trainable, lr=LEARNING_RATE)
    with torch.no_grad():
        concept, unconditional = pipeline.encode_prompt(prompt, "cpu", BATCH_SIZE, True, "")
    both = torch.cat([unconditional, concept])
    scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
    scheduler.set_timesteps(SAMPLING_STEPS)
    channels, size = unet.config.in_channels, unet.config.sample_size
    for _ in range(iterations):
        stop = int(torch.randint(SAMPLING_STEPS, ()))
        latents = torch.randn(BATCH_SIZE, channels, size, size) * scheduler.init_noise_sigma
        unet.eval()
        with torch.no_grad():
            for t in scheduler.timesteps[:stop]:
                unguided, guided = unet(torch.cat([latents] * 2), t, both).sample.chunk(2)
                noise = unguided + sampling_guidance * (guided - unguided)
                latents = scheduler.step(noise, t, latents).prev_sample
            t = scheduler.timesteps[stop]
            frozen_unconditional, frozen_concept = frozen(torch.cat([latents] * 2), t, both).sample.chunk(2)
            target = frozen_unconditional - NEGATIVE_GUIDANCE * (frozen_concept - frozen_unconditional)
        unet.train()
        loss = F.mse_loss(unet(latents, t, concept).sample, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    unet.eval()


def main(argv: list[str] | None = None) -> None:
    from benchmarks.digits.data import prompt_for
    from benchmarks.digits.measure import EVAL_GUIDANCE, load_pipeline
    from benchmarks.digits.train_base import DEFAULT_MODEL_DIR

    parser = argparse.ArgumentParser(description="ESD-x / ESD-u on the digits model (a benchmark baseline).")
    parser.add_argument("--digit", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--parameters", choices=sorted(PARAMETERS), default="xattn", help="xattn: ESD-x; noxattn: ESD-u."
    )
    parser.add_argument("--model_dir", default=DEFAULT_MODEL_DIR)
    parser.add_argument("--output_dir", required=True, help="The erased UNet is saved to OUTPUT_DIR/unet.")
    args = parser.parse_args(argv)
    pipeline = load_pipeline(args.model_dir)
    erase_with_esd(pipeline, prompt_for(args.digit), args.parameters, args.seed, EVAL_GUIDANCE)
    pipeline.unet.save_pretrained(os.path.join(args.output_dir, "unet"))


if __name__ == "__main__":
    main()
