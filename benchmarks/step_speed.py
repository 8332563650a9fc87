#!/usr/bin/env python
"""Training-step speed: EraseDiff's step against a plain diffusers fine-tuning step (issue 5, goals 1-3).

The EraseDiff variants run our real code path: ``pipelines.erasure_step.ErasureStep`` on cached inputs, with
the model's family and training noise (``pipelines.noising``) and the training loop's accumulate /
weigh_gradients / clip / optimizer step from train_erasediff.py. The floor ("plain") is a diffusers-example
step that pushes the same samples (remain + forget batch) through one forward and backward: noise, the
noised latents, the denoiser, MSE, ``accelerator.backward``, clip, optimizer step. All variants share one
denoiser, one AdamW and one accelerator, and run interleaved, one step each in a rotating order, so a slow
spell of the machine hits them alike. Times are medians over the timed steps.

    python benchmarks/step_speed.py --device cpu --model tiny
    python benchmarks/step_speed.py --device cuda --model sd15 --mixed_precision bf16
    python benchmarks/step_speed.py --device cuda --model sdxl --use_lora --gradient_checkpointing
    python benchmarks/step_speed.py --device cuda --model flux --use_lora --gradient_checkpointing

``--model sdxl`` (and its CPU-sized ``tiny_sdxl``) conditions the UNet as SDXL training does: the cached sets
are encoded by an SDXL ``TextConditioner`` over two stand-in encoders (the second with a projection), so the
pooled embedding and the six time ids reach the UNet through ``added_cond_kwargs`` in every variant.
``--model flux`` and ``--model sd3`` (CPU-sized: ``tiny_flux``, ``tiny_sd3``) train a flow-matching
transformer: ErasureStep with a ``FlowMatchingNoising`` over the model's scheduler, and a floor as diffusers'
train_dreambooth_lora_flux.py / _sd3.py step: σ drawn by the weighting scheme, x_t = (1 − σ)·x₀ + σ·ε, the
velocity target ε − x₀ (SD3's preconditioned outputs: x̂₀ against x₀). Both call the transformer through the family's ``denoise`` (FLUX: 2×2-packed
latents, position ids and the guidance value), on the T5 and pooled CLIP conditioning of stand-in encoders.

The last line of the output is one JSON object (``plain_ms``, ``erasediff_fixed_ms``, ``erasediff_bome_ms``,
``ratio_fixed``, ``ratio_bome``, ...); ``--json_out FILE`` also appends it to FILE.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from types import SimpleNamespace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))  # tiny_models: the tests' small CLIP vocabulary

from json_lines import emit  # noqa: E402
from model_shapes import (  # noqa: E402
    DEFAULT_BATCH_SIZE,
    DEFAULT_RESOLUTION,
    DENOISERS,
    FAMILY,
    FLOW_NOISE_SCHEDULE,
    SD_NOISE_SCHEDULE,
    TEXT_LENGTH,
    VAE_SCALE,
    VAE_SCALING_FACTOR,
    VAE_SHIFT_FACTOR,
    dense_bf16_peak,
    flop_per_sample,
    latent_channels,
    model_family,
    pooled_width,
    t5_tokens,
    text_encoder_widths,
)

from pipelines.options import DEFAULT_LAMBDA_REFRESH_STEPS as LAMBDA_REFRESH_STEPS  # noqa: E402

# fixed, bome and cosine regress the data (--remain_target data) and compute λ every step. bome_teacher adds the
# frozen base model as the remain target (one more forward, without a graph); default is it as the script runs
# it, λ computed on one step in LAMBDA_REFRESH_STEPS; fixed_teacher is fixed λ with the teacher. teacher_forward
# times that extra forward alone, the cost the targets allow on top of the plain step.
VARIANTS = ("plain", "fixed", "bome", "cosine", "bome_teacher", "default", "fixed_teacher", "teacher_forward")
TEACHER_VARIANTS = ("bome_teacher", "default", "fixed_teacher", "teacher_forward")
# Cached items per set: enough that batches show different items, few enough to build instantly.
NUM_ITEMS = 16
CAPTIONS = tuple(
    f"a photo of a {thing}" for thing in ("cat", "dog", "car", "tree", "house", "kitchen", "beach", "lake")
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--model",
        choices=tuple(DENOISERS),
        default="tiny",
        help="tiny, the SD-1.5 UNet shape (sd15), the SDXL-base-1.0 UNet shape (sdxl), the FLUX.1-dev (flux) or "
        "SD3.5-Large (sd3) transformer shape, or a tiny one of a family's layout (tiny_sdxl, tiny_flux, tiny_sd3).",
    )
    parser.add_argument(
        "--resolution", type=int, default=None, help="Pixels (default: sdxl, flux, sd3 1024; sd15 512; tiny ones 128)."
    )
    parser.add_argument(
        "--batch_size", type=int, default=None, help="Remain samples per step (sdxl, flux and sd3 1; sd15 8; tiny 4)."
    )
    parser.add_argument("--forget_batch_size", type=int, default=None, help="Forget samples per step (= batch).")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="Comma-separated subset of " + ",".join(VARIANTS) + " (plain is always run: it is the floor).",
    )
    parser.add_argument(
        "--steps", type=int, default=10, help="Timed steps per variant (a multiple of 10 times default's refreshes)."
    )
    parser.add_argument("--warmup", type=int, default=2, help="Untimed steps per variant first.")
    parser.add_argument("--use_lora", action="store_true", help="Train LoRA adapters (rank --rank) instead.")
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--use_8bit_adam", action="store_true", help="bitsandbytes' AdamW8bit for every variant.")
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument(
        "--mixed_precision", choices=("no", "fp16", "bf16"), default=None, help="Default: no on cpu, bf16 on cuda."
    )
    parser.add_argument("--max_grad_norm", type=float, default=1.0)
    # Switches the training script does not use yet (docs/performance.md), for before/after figures.
    parser.add_argument("--channels_last", action="store_true", help="Denoiser in channels_last memory format.")
    parser.add_argument(
        "--unfused_adam",
        action="store_true",
        help="torch.optim.AdamW's default kernels instead of fused=True (what train_erasediff.py uses).",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the denoiser (module.compile()).")
    parser.add_argument(
        "--sdpa", choices=("default", "cudnn", "flash", "efficient", "math"), default="default", help="SDPA backend."
    )
    parser.add_argument("--cudnn_benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True.")
    parser.add_argument(
        "--prefetch_draws",
        action="store_true",
        help="Proposed, not in pipelines yet: draw the next micro-batch's random numbers on a background thread.",
    )
    parser.add_argument("--allow_tf32", action="store_true")
    parser.add_argument("--label", default=None, help="A name for this configuration in the JSON.")
    parser.add_argument("--json_out", default=None, help="Also append the JSON line to this file.")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads (default 1: on shared cores a 2-thread team stalls whenever another job takes a core).",
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default=None,
        help="What ms/step counts: wall-clock time, or this process's CPU time (default: cpu on --device cpu, "
        "where other jobs share the cores, so time spent descheduled is not counted; wall on cuda).",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.clock = args.clock or ("cpu" if args.device == "cpu" else "wall")
    args.resolution = args.resolution or DEFAULT_RESOLUTION[args.model]
    args.batch_size = args.batch_size or DEFAULT_BATCH_SIZE[args.model]
    args.forget_batch_size = args.forget_batch_size or args.batch_size
    args.mixed_precision = args.mixed_precision or ("bf16" if args.device == "cuda" else "no")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {','.join(VARIANTS)}")
    args.variants = ["plain"] + [v for v in VARIANTS[1:] if v in variants]
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be at least 1 and --warmup not negative")
    # The VAE's factor times the latent multiple of the denoiser (SD3's patches, FLUX's 2×2 packing).
    multiple = VAE_SCALE * model_family(args.model).latent_multiple(DENOISERS[args.model])
    if args.resolution % multiple:
        parser.error(f"--resolution must be a multiple of {multiple} for --model {args.model}")
    return args


class FrozenVAEStandIn:
    """Stands in for the frozen VAE, which encodes each image once before training and never runs inside a
    step: it returns a latent distribution (mean, std) of the model's VAE's shape, [B, C, H/8, W/8] (C = 4 for
    SD and SDXL, 16 for SD3 and FLUX), with that VAE's scaling and shift factors."""

    def __init__(self, model: str, dtype, seed: int):
        from diffusers.configuration_utils import FrozenDict

        self.dtype, self.seed, self.channels = dtype, seed, latent_channels(model)
        self.config = FrozenDict(scaling_factor=VAE_SCALING_FACTOR[model], shift_factor=VAE_SHIFT_FACTOR.get(model))

    def encode(self, pixels):
        import torch

        batch, _, height, width = pixels.shape
        shape = (batch, self.channels, height // VAE_SCALE, width // VAE_SCALE)
        generator = torch.Generator().manual_seed(self.seed)
        self.seed += 1
        mean = (torch.randn(shape, generator=generator) * 5).to(pixels.device)
        std = (torch.rand(shape, generator=generator) * 0.1).to(pixels.device)
        sample = lambda: mean + std * torch.randn_like(std)  # noqa: E731
        return SimpleNamespace(latent_dist=SimpleNamespace(mean=mean, std=std, sample=sample))


def text_conditioner(model: str, device, dtype):
    """The family's ``TextConditioner`` over stand-in encoders of the real widths and sequence lengths, each
    of the class the family's pipeline loads (``ModelFamily.text_encoders``): one-layer CLIP text encoders
    of 77 tokens and one-layer T5 encoders (the tests' own), with the tests' small vocabularies. They encode
    each distinct caption once, before training, so their depth does not matter.

    SD-shaped models get one CLIP of the UNet's cross-attention width. SDXL-shaped ones get two, as
    ``pipelines.models.load_models`` does: a ``CLIPTextModel`` and a ``CLIPTextModelWithProjection`` whose
    widths add up to the cross-attention width and whose projection gives the pooled embedding. FLUX gets a
    CLIP whose pooled output is the pooled embedding and a T5 (512 tokens); SD3 two CLIPs with projections
    (their penultimate states zero-padded to T5's width, their projections side by side) and a T5 (256 tokens).
    """
    import transformers
    from tiny_models import tiny_t5, tiny_t5_tokenizer, write_tokenizer_files

    from pipelines.families import SDXL, TextConditioner

    family = model_family(model)
    vocab_dir = tempfile.mkdtemp(prefix="bench-clip-vocab-")
    vocab_size = write_tokenizer_files(vocab_dir)
    clip_tokenizer = transformers.CLIPTokenizer.from_pretrained(vocab_dir, model_max_length=TEXT_LENGTH)
    tokenizers, encoders = [], []
    for slot, width in zip(family.text_encoders, text_encoder_widths(model), strict=True):
        if slot.encoder_class == "T5EncoderModel":
            tokenizer = tiny_t5_tokenizer(t5_tokens(model))
            encoder = tiny_t5(tokenizer, width)
        else:
            tokenizer = clip_tokenizer
            config = transformers.CLIPTextConfig(
                vocab_size=vocab_size,
                hidden_size=width,
                intermediate_size=2 * width,
                num_hidden_layers=1,
                num_attention_heads=max(1, width // 64),
                max_position_embeddings=TEXT_LENGTH,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                # SDXL's one projecting encoder gives the whole pooled embedding; each of SD3's its own width.
                projection_dim=pooled_width(model) if family.name == SDXL else width,
            )
            encoder = getattr(transformers, slot.encoder_class)(config)
        tokenizers.append(tokenizer)
        encoders.append(encoder.to(device, dtype).requires_grad_(False))
    return TextConditioner(family, tokenizers, encoders)


def image_set(resolution: int, first_seed: int):
    """NUM_ITEMS blank square images with NUM_PROMPTS distinct captions (the pixels do not matter: the VAE
    stand-in ignores them)."""
    from PIL import Image

    from pipelines.data_sources import CaptionedImages

    images = [Image.new("RGB", (resolution, resolution), (first_seed + i) % 256) for i in range(NUM_ITEMS)]
    return CaptionedImages(images=images, captions=[CAPTIONS[i % len(CAPTIONS)] for i in range(NUM_ITEMS)])


class PrefetchingStream:
    """A proposed change (not in pipelines yet), measured with ``--prefetch_draws``.

    ``SampleStream.draw`` makes every random number on the CPU, so that runs do not depend on the device: for
    8 + 8 SD-1.5 samples about 3.6 ms of CPU time per step here, while the GPU idles. This wrapper draws the
    next micro-batch's positions on a background thread while the device works on this one, and hands back
    exactly the numbers the stream would draw.
    """

    def __init__(self, stream, world_size: int, draw_thread):
        self.stream, self.world_size, self.draw_thread = stream, world_size, draw_thread
        self.num_items = stream.num_items
        self.ahead = None  # (the draw's arguments, its future)

    def draw(self, positions, latent_shape, timesteps, forget_noise=None, empty_prompt_probability=0.0):
        request = (tuple(positions), tuple(latent_shape), timesteps, forget_noise, empty_prompt_probability)
        if self.ahead is not None and self.ahead[0] == request:
            pending = self.ahead[1]
        else:
            pending = self.draw_thread.submit(self.stream.draw, *request)
        # This process's positions in the next global micro-batch (randomness.global_positions).
        following = (tuple(p + self.world_size * len(positions) for p in positions), *request[1:])
        self.ahead = (following, self.draw_thread.submit(self.stream.draw, *following))
        return pending.result()


class Bench:
    """The model, optimizer, accelerator and the step of each variant, sharing one denoiser and one AdamW."""

    def __init__(self, args: argparse.Namespace):
        import torch
        from accelerate import Accelerator
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import cast_training_params

        from pipelines.erasure_step import ErasureSettings, ErasureStep
        from pipelines.families import SDXL, time_ids
        from pipelines.latent_cache import EncodedImageSet, scaled_latents
        from pipelines.noising import training_noising
        from pipelines.randomness import FORGET_STREAM, REMAIN_STREAM, SampleStream
        from pipelines.teacher import FrozenTeacher
        from pipelines.trainable import add_lora_adapters, select_trainable_parameters

        self.args, self.torch = args, torch
        self.accelerator = Accelerator(mixed_precision=args.mixed_precision, cpu=args.device == "cpu")
        device = self.accelerator.device
        self.device = device
        if args.allow_tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if args.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True
        weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.mixed_precision, torch.float32)

        # As train_erasediff.py / pipelines.models: frozen parts in weight_dtype, a full fine-tuning denoiser in
        # fp32 under autocast, a LoRA run's denoiser in weight_dtype with fp32 adapters; --train_method full and
        # the family's LoRA target modules.
        torch.manual_seed(args.seed)
        self.family = family = model_family(args.model)
        with torch.device(device):  # random init on the device itself: seconds for SD-1.5 on a GPU
            denoiser = family.denoiser_class()(**DENOISERS[args.model])
        denoiser.requires_grad_(False)
        self.model_dtype = weight_dtype if args.use_lora else torch.float32
        if self.model_dtype != torch.float32:
            denoiser.to(dtype=self.model_dtype)
        if args.use_lora:
            trainable = add_lora_adapters(
                denoiser, args.rank, float(args.rank), "full", family.lora_target_modules, family.parts
            )
        else:
            trainable = select_trainable_parameters(denoiser, "full", family.parts)
        cast_training_params(denoiser, dtype=torch.float32)
        if args.gradient_checkpointing:
            denoiser.enable_gradient_checkpointing()
        if args.channels_last:
            denoiser.to(memory_format=torch.channels_last)
        self.trainable = trainable
        self.trainable_count = sum(p.numel() for p in trainable)

        learning_rate = 1e-4 if args.use_lora else 1e-5
        adam = dict(lr=learning_rate, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
        if args.use_8bit_adam:
            import bitsandbytes as bnb

            optimizer = bnb.optim.AdamW8bit(trainable, **adam)
        else:
            optimizer = torch.optim.AdamW(trainable, **adam, fused=not args.unfused_adam)
        lr_scheduler = get_scheduler("constant", optimizer=optimizer)
        self.denoiser, self.optimizer, self.lr_scheduler = self.accelerator.prepare(denoiser, optimizer, lr_scheduler)
        if args.compile:
            self.denoiser.compile()
        self.denoiser.train()

        # The training schedule: SD's DDPM one (SDXL-base-1.0 trains with the same), or the flow-matching
        # scheduler of FLUX.1-dev / SD3.5 under the family's defaults (σ sampling; SD3: preconditioned outputs).
        if family.flow_matching:
            schedule = ("FlowMatchEulerDiscreteScheduler", FLOW_NOISE_SCHEDULE[family.name])
        else:
            schedule = ("DDPMScheduler", SD_NOISE_SCHEDULE)
        self.noising = training_noising(family, *schedule)
        self.scheduler = self.noising.scheduler
        # The forget and remain sets as train_erasediff.py caches them: EncodedImageSet with the family's text
        # conditioner; the VAE is a stand-in (it runs once, before training, never inside a step).
        conditioner = text_conditioner(args.model, device, weight_dtype)
        encode = dict(
            vae=FrozenVAEStandIn(args.model, weight_dtype, args.seed),
            conditioner=conditioner,
            resolution=args.resolution,
            center_crop=True,
            random_flip=False,
            device=device,
        )
        forget_images, remain_images = image_set(args.resolution, 0), image_set(args.resolution, 100)
        forget_set = EncodedImageSet(forget_images, **encode)
        remain_set = EncodedImageSet(remain_images, **encode)

        # The plain step's inputs, made the diffusers-example way from the same images and captions and held
        # on the device (the example encodes every step; the floor leaves that out, as our step does): scaled
        # (and for SD3/FLUX shifted) VAE latents and the family's prompt embeddings (SDXL: both encoders'
        # penultimate hidden states concatenated and the second's pooled projection, as
        # train_text_to_image_sdxl.py's encode_prompt, with the time ids (original size, crop top-left,
        # target size) of these uncropped square images).
        vae = FrozenVAEStandIn(args.model, weight_dtype, args.seed + 1)
        pixels = torch.zeros(2 * NUM_ITEMS, 3, args.resolution, args.resolution, device=device)
        self.plain_latents = scaled_latents(vae, vae.encode(pixels).latent_dist.sample())
        self.plain_embeddings = conditioner.encode(remain_images.captions + forget_images.captions, device)
        self.plain_time_ids = None
        if family.name == SDXL:
            size = (args.resolution, args.resolution)
            self.plain_time_ids = time_ids(size, (0, 0), args.resolution).repeat(2 * NUM_ITEMS, 1).to(device)
        self.samples_per_step = args.batch_size + args.forget_batch_size

        draw_thread = ThreadPoolExecutor(max_workers=1) if args.prefetch_draws else None

        def stream(stream_id: int):
            sample_stream = SampleStream(args.seed, stream_id, NUM_ITEMS)
            if draw_thread is None:
                return sample_stream
            return PrefetchingStream(sample_stream, self.accelerator.num_processes, draw_thread)

        # Only the measured variants are built: the teacher's copy of θ₀ would count in every variant's peak.
        teacher = None
        if any(variant in TEACHER_VARIANTS for variant in args.variants):
            teacher = FrozenTeacher(self.accelerator.unwrap_model(self.denoiser), args.use_lora, weight_dtype)
        self.steps = {}
        for variant in args.variants[1:]:
            mode = "fixed" if variant == "fixed_teacher" else "bome" if variant in TEACHER_VARIANTS else variant
            remain_target = "teacher" if variant in TEACHER_VARIANTS else "data"
            self.steps[variant] = ErasureStep(
                self.accelerator,
                self.denoiser,
                family,
                self.noising,
                ErasureSettings(lambda_mode=mode, remain_target=remain_target),
                forget_set,
                remain_set,
                stream(FORGET_STREAM),
                stream(REMAIN_STREAM),
                args.forget_batch_size,
                args.batch_size,
                trainable,
                self.model_dtype,
                teacher=teacher if remain_target == "teacher" else None,
            )
        self.micro_batch_index = dict.fromkeys(VARIANTS, 0)
        self.refresh_steps = {v: LAMBDA_REFRESH_STEPS if v == "default" else 1 for v in VARIANTS}

    def plain_noised(self, latents, noise):
        """Noised latents, timesteps, and the output's map onto what is regressed with its target, as the
        diffusers examples do: DDPM's uniform integer t, ``add_noise`` and ε (train_text_to_image.py); or flow
        matching's (train_dreambooth_lora_flux.py, _sd3.py): u from the weighting scheme's density, t = the
        schedule's entry at ⌊u·T⌋, σ = t / T, x_t = (1 − σ)·x₀ + σ·ε and the velocity ε − x₀, or with SD3's
        preconditioned outputs x̂₀ = x_t − σ·v̂ against x₀ (both families' default schemes weigh every σ alike)."""
        torch = self.torch
        count, num_train_timesteps = latents.shape[0], self.scheduler.config.num_train_timesteps
        if not self.family.flow_matching:
            timesteps = torch.randint(0, num_train_timesteps, (count,), device=latents.device).long()
            return self.scheduler.add_noise(latents, noise, timesteps), timesteps, lambda output: output, noise
        from diffusers.training_utils import compute_density_for_timestep_sampling

        sampling = self.noising.sampling
        u = compute_density_for_timestep_sampling(
            sampling.weighting_scheme, count, sampling.logit_mean, sampling.logit_std, sampling.mode_scale
        )
        timesteps = self.scheduler.timesteps[(u * num_train_timesteps).long()].to(latents.device)
        sigmas = (timesteps / num_train_timesteps).view(-1, 1, 1, 1)
        noisy_latents = (1.0 - sigmas) * latents + sigmas * noise
        if sampling.precondition_outputs:
            return noisy_latents, timesteps, lambda output: noisy_latents - sigmas * output, latents
        return noisy_latents, timesteps, lambda output: output, noise - latents

    def plain_step(self) -> None:
        """A diffusers-example fine-tuning step on the same number of samples (remain + forget); the denoiser
        is called as the family calls it, which is the example's call (FLUX: packed latents, position ids,
        guidance)."""
        torch, accelerator = self.torch, self.accelerator
        with accelerator.accumulate(self.denoiser):
            rows = torch.randint(0, len(self.plain_latents), (self.samples_per_step,), device=self.device)
            latents = self.plain_latents[rows]
            noise = torch.randn_like(latents)
            noisy_latents, timesteps, regressed, target = self.plain_noised(latents, noise)
            time_ids = None if self.plain_time_ids is None else self.plain_time_ids[rows]
            model_pred = self.family.denoise(
                self.denoiser, noisy_latents, timesteps, self.plain_embeddings.select(rows), time_ids, self.model_dtype
            )
            loss = torch.nn.functional.mse_loss(regressed(model_pred.float()), target.float(), reduction="mean")
            accelerator.backward(loss)
            if accelerator.sync_gradients and self.args.max_grad_norm > 0:
                accelerator.clip_grad_norm_(self.trainable, self.args.max_grad_norm)
            self.optimizer.step()
            self.lr_scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        loss.detach().item()  # the example logs the loss every step

    def erasediff_step(self, mode: str) -> None:
        """One optimizer step of train_erasediff.py's loop, through ErasureStep."""
        accelerator, step = self.accelerator, self.steps[mode]
        refresh = self.micro_batch_index[mode] % self.refresh_steps[mode] == 0
        with accelerator.accumulate(self.denoiser):
            remain_value, forget_value, _ = step.run(self.micro_batch_index[mode], refresh)
            if accelerator.sync_gradients:
                lam = step.weigh_gradients(refresh)
                if self.args.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(self.trainable, self.args.max_grad_norm)
            self.optimizer.step()
            self.lr_scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.micro_batch_index[mode] += 1
        self.logged = (remain_value.item(), forget_value.item(), float(lam))  # what the loop logs every step

    def teacher_forward(self) -> None:
        """The teacher's no-grad forward on one remain micro-batch: what the teacher target adds to a step."""
        step = self.steps["teacher_forward"]
        _, remain = step.draw(self.micro_batch_index["teacher_forward"])
        step.teacher_prediction(remain).sum().item()
        self.micro_batch_index["teacher_forward"] += 1

    def run(self, variant: str) -> None:
        if variant == "plain":
            self.plain_step()
        elif variant == "teacher_forward":
            self.teacher_forward()
        else:
            self.erasediff_step(variant)

    def timed(self, variant: str) -> tuple[float, float, int | None]:
        """Wall-clock and process CPU seconds of one step, and its peak device memory in bytes (CUDA only)."""
        torch = self.torch
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        wall, cpu = time.perf_counter(), time.process_time()
        self.run(variant)
        if cuda:
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return wall, cpu, torch.cuda.max_memory_allocated() if cuda else None


def attention_backend(name: str):
    """A context that restricts scaled_dot_product_attention to one backend (or changes nothing)."""
    if name == "default":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = {
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "math": SDPBackend.MATH,
    }
    return sdpa_kernel([backends[name]])


def measure(bench: Bench, args: argparse.Namespace) -> dict[str, dict]:
    """Warm-up, then ``--steps`` rounds; each round runs every variant once, in an order rotated per round."""
    results = {v: {"wall": [], "cpu": [], "peak_bytes": 0} for v in args.variants}
    for variant in args.variants:
        for _ in range(args.warmup):
            bench.run(variant)
    for round_index in range(args.steps):
        shift = round_index % len(args.variants)
        for variant in args.variants[shift:] + args.variants[:shift]:
            wall, cpu, peak = bench.timed(variant)
            results[variant]["wall"].append(wall)
            results[variant]["cpu"].append(cpu)
            results[variant]["peak_bytes"] = max(results[variant]["peak_bytes"], peak or 0)
    return results


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def summarise(bench: Bench, args: argparse.Namespace, measured: dict[str, dict]) -> dict:
    import diffusers
    import torch

    name = device_name(bench.device)
    flop = flop_per_sample(args.model, args.resolution, args.use_lora)
    peak_flops = dense_bf16_peak(name) if bench.device.type == "cuda" else None
    clock = args.clock
    plain = measured["plain"][clock]
    plain_ms = statistics.median(plain) * 1e3
    variants = {}
    for variant, result in measured.items():
        times = result[clock]
        if bench.refresh_steps[variant] > 1:  # one step in k does more: the mean over the steps is its cost
            ms = statistics.mean(times) * 1e3
            paired = statistics.mean(times) / statistics.mean(plain)
        else:
            ms = statistics.median(times) * 1e3
            # Paired ratio: this variant's step over the plain step of the same round, median over rounds.
            paired = statistics.median(t / p for t, p in zip(times, plain))
        samples_per_s = bench.samples_per_step / (ms / 1e3)
        variants[variant] = {
            "ms": round(ms, 2),
            "ms_min": round(min(times) * 1e3, 2),
            "ms_max": round(max(times) * 1e3, 2),
            "wall_ms": round(statistics.median(result["wall"]) * 1e3, 2),
            "cpu_ms": round(statistics.median(result["cpu"]) * 1e3, 2),
            "samples_per_s": round(samples_per_s, 2),
            "ratio": round(ms / plain_ms, 4),
            "paired_ratio": round(paired, 4),
            "achieved_tflops": round(samples_per_s * flop / 1e12, 3),
            "mfu": round(samples_per_s * flop / peak_flops, 4) if peak_flops else None,
            "peak_memory_mib": round(result["peak_bytes"] / 2**20, 1) if result["peak_bytes"] else None,
        }

    def key(variant: str, field: str):
        return variants[variant][field] if variant in variants else None

    return {
        "plain_ms": key("plain", "ms"),
        "erasediff_fixed_ms": key("fixed", "ms"),
        "erasediff_bome_ms": key("bome", "ms"),
        "erasediff_cosine_ms": key("cosine", "ms"),
        "erasediff_bome_teacher_ms": key("bome_teacher", "ms"),
        "ratio_fixed": key("fixed", "ratio"),
        "ratio_bome": key("bome", "ratio"),
        "ratio_cosine": key("cosine", "ratio"),
        "ratio_bome_teacher": key("bome_teacher", "ratio"),
        "erasediff_default_ms": key("default", "ms"),
        "erasediff_fixed_teacher_ms": key("fixed_teacher", "ms"),
        "teacher_forward_ms": key("teacher_forward", "ms"),
        "ratio_default": key("default", "ratio"),
        "ratio_fixed_teacher": key("fixed_teacher", "ratio"),
        "ratio_teacher_forward": key("teacher_forward", "ratio"),
        "lambda_refresh_steps": LAMBDA_REFRESH_STEPS,
        "label": args.label,
        "benchmark": "step_speed",
        "device": args.device,
        "device_name": name,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "model": args.model,
        "family": FAMILY[args.model],
        "denoiser": bench.family.denoiser_class_name,
        "resolution": args.resolution,
        "batch_size": args.batch_size,
        "forget_batch_size": args.forget_batch_size,
        "samples_per_step": bench.samples_per_step,
        "trainable_parameters": bench.trainable_count,
        "use_lora": args.use_lora,
        "use_8bit_adam": args.use_8bit_adam,
        "gradient_checkpointing": args.gradient_checkpointing,
        "mixed_precision": args.mixed_precision,
        "switches": {
            "channels_last": args.channels_last,
            "unfused_adam": args.unfused_adam,
            "compile": args.compile,
            "sdpa": args.sdpa,
            "cudnn_benchmark": args.cudnn_benchmark,
            "allow_tf32": args.allow_tf32,
            "prefetch_draws": args.prefetch_draws,
        },
        "clock": clock,
        "threads": args.threads if args.device == "cpu" else None,
        "steps": args.steps,
        "warmup": args.warmup,
        "flop_per_sample": flop,
        "peak_bf16_flops": peak_flops,
        # ru_maxrss is the whole process's high-water mark (KiB on Linux), not one variant's.
        "process_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "variants": variants,
    }


def print_table(summary: dict) -> None:
    names = {
        "plain": "plain fine-tuning",
        "fixed": "EraseDiff λ fixed",
        "bome": "EraseDiff λ bome",
        "cosine": "EraseDiff λ cosine",
        "bome_teacher": "bome, teacher",
        "default": f"default (λ 1 step in {LAMBDA_REFRESH_STEPS})",
        "fixed_teacher": "λ fixed, teacher",
        "teacher_forward": "teacher forward only",
    }
    setup = (
        f"{summary['model']} {summary['denoiser']}, {summary['resolution']} px, batch {summary['batch_size']} remain + "
        f"{summary['forget_batch_size']} forget, {'LoRA' if summary['use_lora'] else 'full'}, "
        f"{'8-bit Adam' if summary['use_8bit_adam'] else 'AdamW'}, mixed precision {summary['mixed_precision']}"
        f"{', gradient checkpointing' if summary['gradient_checkpointing'] else ''} on {summary['device_name']}"
    )
    print(setup)
    print(
        f"ms/step: median {summary['clock']} time per step over {summary['steps']} interleaved rounds (default: "
        f"the mean, as one step in {summary['lambda_refresh_steps']} computes λ)"
    )
    header = (
        f"{'variant':<20} {'ms/step':>9} {'min-max':>13} {'wall ms':>9} {'samples/s':>10} {'ratio':>7} "
        f"{'paired':>7} {'TFLOP/s':>8} {'MFU':>6} {'peak mem':>10}"
    )
    print(header)
    print("-" * len(header))
    for variant, row in summary["variants"].items():
        memory = f"{row['peak_memory_mib'] / 1024:.2f} GiB" if row["peak_memory_mib"] else "n/a"
        mfu = f"{row['mfu']:.1%}" if row["mfu"] is not None else "n/a"
        spread = f"{row['ms_min']:.0f}-{row['ms_max']:.0f}"
        print(
            f"{names[variant]:<20} {row['ms']:>9.1f} {spread:>13} {row['wall_ms']:>9.1f} {row['samples_per_s']:>10.2f} "
            f"{row['ratio']:>7.3f} {row['paired_ratio']:>7.3f} {row['achieved_tflops']:>8.3f} {mfu:>6} {memory:>10}"
        )
    if summary["device"] == "cpu":
        print(f"peak memory: n/a per variant on CPU; process peak RSS {summary['process_peak_rss_mib']:.0f} MiB")
    verdicts = []
    if summary["ratio_fixed"] is not None:
        verdicts.append(f"fixed {summary['ratio_fixed']:.3f}x (goal <= 1.10x)")
    teacher = summary["ratio_teacher_forward"]
    for name, goal in (("default", 1.10), ("fixed_teacher", 1.05)):
        if summary[f"ratio_{name}"] is not None and teacher is not None:
            verdicts.append(
                f"{name} {summary[f'ratio_{name}']:.3f}x (goal <= {goal:.2f}x + the teacher's forward "
                f"{teacher:.3f}x = {goal + teacher:.3f}x)"
            )
    for mode in ("bome", "cosine"):
        if summary[f"ratio_{mode}"] is not None:
            verdicts.append(f"{mode} {summary[f'ratio_{mode}']:.3f}x (goal <= 1.25x)")
    print("ratio to plain: " + "; ".join(verdicts))


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible")
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    bench = Bench(args)
    with attention_backend(args.sdpa):
        measured = measure(bench, args)
    summary = summarise(bench, args, measured)
    print_table(summary)
    emit(summary, args.json_out)
    return summary


if __name__ == "__main__":
    main()
