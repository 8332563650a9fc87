#!/usr/bin/env python
"""Trains the digits base model: a small StableDiffusionPipeline (AutoencoderKL, CLIP text encoder with a
13-word vocabulary, UNet2DConditionModel, DDIM scheduler: the real diffusers classes) on scikit-learn's
8×8 digits upsampled to 16×16, with prompts "a handwritten digit zero" … "nine".

    python benchmarks/digits/train_base.py                 # writes benchmarks/digits/model (about 16 min, 1 thread)
    python benchmarks/digits/train_base.py --exclude_digit 3 --output_dir …   # the retrained oracle for 3

Reproducible from --seed (on the same torch build). Stage 1 trains the VAE (reconstruction + a small KL);
stage 2 freezes it and trains the UNet and the text encoder together on the usual ε-prediction loss, with
10% of the captions dropped to "" so classifier-free guidance works, and keeps an exponential moving
average of the weights, which is what is saved.

With --exclude_digit the UNet and text encoder never see that digit: its images leave stage 2, so its word's
embedding is never trained either. This is the retrained oracle, the machine-unlearning gold standard an
erasure is compared with. The VAE stage still sees every digit, exactly as the base model's did (same data,
same seed, so the same VAE): erasure changes only the denoiser, and a generic image codec is not the concept.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from benchmarks.digits.data import IMAGE_SIZE, MAX_TOKENS, load_split, prompt_for, upsample, write_clip_vocab  # noqa: E402

DEFAULT_MODEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train the tiny digits text-to-image model.")
    parser.add_argument("--output_dir", default=DEFAULT_MODEL_DIR, help="Where the pipeline is saved.")
    parser.add_argument("--seed", type=int, default=0, help="Seed for initialisation, batches and noise.")
    parser.add_argument("--vae_steps", type=int, default=600, help="VAE training steps.")
    parser.add_argument("--unet_steps", type=int, default=3000, help="UNet + text encoder training steps.")
    parser.add_argument("--batch_size", type=int, default=64, help="Images per step.")
    parser.add_argument("--learning_rate", type=float, default=1e-3, help="Peak learning rate (cosine decay).")
    parser.add_argument("--ema_decay", type=float, default=0.999, help="Decay of the weight average that is saved.")
    parser.add_argument("--caption_dropout", type=float, default=0.1, help="Fraction of captions replaced by ''.")
    parser.add_argument(
        "--exclude_digit",
        type=int,
        choices=range(10),
        default=None,
        help="Leave this digit out of the UNet and text encoder's training (the retrained oracle).",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads.")
    return parser


def build_components(seed: int):
    """Tokenizer, text encoder, VAE, UNet and scheduler with the digits model's (fixed) architecture."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    vocab_dir = tempfile.mkdtemp(prefix="digits-clip-vocab-")
    vocab_size = write_clip_vocab(vocab_dir)
    tokenizer = CLIPTokenizer.from_pretrained(vocab_dir, model_max_length=MAX_TOKENS)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=MAX_TOKENS,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=IMAGE_SIZE,
        mid_block_add_attention=False,
    )
    unet = UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 2,
        in_channels=4,
        out_channels=4,
        # Cross-attention only at 4×4 and in the middle: the prompt names a class, a global property, and
        # attention over the 64 positions of the 8×8 level would cost more than the rest of the UNet.
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )
    return tokenizer, text_encoder, vae, unet, scheduler


def cosine_lr(step: int, total: int, peak: float, warmup: int = 100) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def train_vae(vae, pixels, steps: int, batch_size: int, learning_rate: float, generator) -> None:
    import torch
    import torch.nn.functional as F

    optimizer = torch.optim.AdamW(vae.parameters(), lr=learning_rate, weight_decay=0.0)
    vae.train()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, steps, learning_rate)
        batch = pixels[torch.randint(len(pixels), (batch_size,), generator=generator)]
        posterior = vae.encode(batch).latent_dist
        reconstruction = vae.decode(posterior.sample(generator=generator)).sample
        loss = F.mse_loss(reconstruction, batch) + 1e-5 * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 250 == 0 or step == steps - 1:
            print(f"vae step {step}: loss {loss.item():.4f}", flush=True)
    vae.eval()


def main(args: argparse.Namespace) -> str:
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    torch.set_num_threads(args.threads)
    started = time.time()
    tokenizer, text_encoder, vae, unet, scheduler = build_components(args.seed)
    train_x, train_y, _, _ = load_split()
    pixels = upsample(train_x)
    labels = torch.as_tensor(train_y)
    generator = torch.Generator().manual_seed(args.seed)

    train_vae(vae, pixels, args.vae_steps, args.batch_size, args.learning_rate, generator)
    vae.requires_grad_(False)
    with torch.no_grad():
        posterior = vae.encode(pixels).latent_dist
        latent_mean, latent_std = posterior.mean, posterior.std
        scaling_factor = float(1.0 / posterior.sample(generator=generator).std())
        reconstruction_error = F.mse_loss(vae.decode(latent_mean).sample, pixels).item()
    vae.register_to_config(scaling_factor=scaling_factor)
    print(f"vae: reconstruction mse {reconstruction_error:.4f}, scaling factor {scaling_factor:.3f}", flush=True)

    if args.exclude_digit is not None:
        # After the VAE stage, so the VAE and the generator's state up to here match the base model's.
        kept = labels != args.exclude_digit
        latent_mean, latent_std, labels = latent_mean[kept], latent_std[kept], labels[kept]
        pixels = pixels[kept]
    prompts = [prompt_for(d) for d in range(10)] + [""]
    token_ids = tokenizer(prompts, padding="max_length", max_length=MAX_TOKENS, return_tensors="pt").input_ids
    noise_scheduler = DDPMScheduler.from_config(scheduler.config)
    trained = list(unet.parameters()) + list(text_encoder.parameters())
    ema = [p.detach().clone() for p in trained]
    optimizer = torch.optim.AdamW(trained, lr=args.learning_rate, weight_decay=1e-2)
    unet.train()
    text_encoder.train()
    for step in range(args.unet_steps):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, args.unet_steps, args.learning_rate)
        index = torch.randint(len(pixels), (args.batch_size,), generator=generator)
        latents = latent_mean[index] + latent_std[index] * torch.randn(latent_mean[index].shape, generator=generator)
        latents = latents * scaling_factor
        captions = labels[index].clone()
        captions[torch.rand(args.batch_size, generator=generator) < args.caption_dropout] = 10
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(noise_scheduler.config.num_train_timesteps, (args.batch_size,), generator=generator)
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        states = text_encoder(token_ids[captions])[0]
        loss = F.mse_loss(unet(noisy, timesteps, encoder_hidden_states=states).sample, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        with torch.no_grad():
            decay = min(args.ema_decay, (1 + step) / (10 + step))
            torch._foreach_lerp_(ema, [p.detach() for p in trained], 1 - decay)
        if step % 250 == 0 or step == args.unet_steps - 1:
            print(f"unet step {step}: loss {loss.item():.4f} ({time.time() - started:.0f} s)", flush=True)
    with torch.no_grad():
        for parameter, average in zip(trained, ema):
            parameter.copy_(average)
    unet.eval()
    text_encoder.eval()

    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(args.output_dir, safe_serialization=True)
    record = {**vars(args), "output_dir": os.path.relpath(args.output_dir, ROOT)}
    record.update(
        seconds=round(time.time() - started, 1),
        vae_reconstruction_mse=round(reconstruction_error, 5),
        torch=torch.__version__,
        unet_parameters=sum(p.numel() for p in unet.parameters()),
        vae_parameters=sum(p.numel() for p in vae.parameters()),
        text_encoder_parameters=sum(p.numel() for p in text_encoder.parameters()),
    )
    with open(os.path.join(args.output_dir, "training.json"), "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2)
    print(f"saved {args.output_dir} in {record['seconds']} s", flush=True)
    return args.output_dir


if __name__ == "__main__":
    main(build_parser().parse_args())
