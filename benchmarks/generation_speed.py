#!/usr/bin/env python
"""Generation speed: our forget/remain set generation against stock StableDiffusionPipeline calls (issue 5,
goal 4: images/s at least 0.95x stock at the same batch size).

"ours" is ``pipelines.generation.generate_image_set``, which also writes each image as a PNG (under a
temporary name, then renamed) and the set's metadata.jsonl; "stock" is a plain loop of pipeline calls at the
same batch size, prompts, steps and guidance, keeping the PIL images in memory. Both run on one pipeline,
alternating per round (the order swaps each round); images/s is the median over rounds.

    python benchmarks/generation_speed.py --device cpu --model tiny
    python benchmarks/generation_speed.py --device cuda --model sd15

The last line of the output is one JSON object (``stock_images_per_s``, ``ours_images_per_s``, ``ratio``, ...);
``--json_out FILE`` also appends it to FILE.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from json_lines import emit  # noqa: E402
from model_shapes import SD15_TEXT_ENCODER, SD15_UNET, SD15_VAE, SD_NOISE_SCHEDULE  # noqa: E402

# Words the tests' tiny CLIP vocabulary knows whole, so prompts tokenize as they would with a real vocabulary.
PROMPTS = (
    "a painting of a city street in the style of van gogh",
    "a photo of a cat",
    "a picture of a house by the lake",
    "a still life painting of a bowl of fruit on a table",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--model", choices=("tiny", "sd15"), default="tiny", help="tests' tiny pipeline, or SD-1.5's shapes."
    )
    parser.add_argument("--resolution", type=int, default=None, help="Pixels (default: tiny 16, sd15 512).")
    parser.add_argument(
        "--batch_size", type=int, default=4, help="Images per pipeline call (--generation_batch_size)."
    )
    parser.add_argument("--num_images", type=int, default=4, help="Images per round and side.")
    parser.add_argument("--inference_steps", type=int, default=50, help="Denoising steps (--generation_steps).")
    parser.add_argument("--guidance_scale", type=float, default=7.5)
    parser.add_argument("--rounds", type=int, default=20, help="Timed rounds (each: stock and ours once).")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed rounds first.")
    parser.add_argument(
        "--dtype", choices=("fp32", "bf16", "fp16"), default=None, help="Default: fp32 cpu, bf16 cuda."
    )
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1; see step_speed.py).")
    parser.add_argument(
        "--clock", choices=("wall", "cpu"), default=None, help="Default: cpu time on --device cpu, wall on cuda."
    )
    parser.add_argument("--label", default=None, help="A name for this configuration in the JSON.")
    parser.add_argument("--json_out", default=None, help="Also append the JSON line to this file.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.resolution = args.resolution or (512 if args.model == "sd15" else 16)
    args.dtype = args.dtype or ("bf16" if args.device == "cuda" else "fp32")
    args.clock = args.clock or ("cpu" if args.device == "cpu" else "wall")
    if args.rounds < 1 or args.warmup < 0 or args.num_images < 1 or args.batch_size < 1:
        parser.error("--rounds, --num_images and --batch_size must be at least 1, --warmup not negative")
    return args


def sd15_pipeline(device, dtype, seed: int):
    """A StableDiffusionPipeline with SD-1.5's component shapes and random weights, built on ``device``."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from tiny_models import write_tokenizer_files
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    vocab_dir = tempfile.mkdtemp(prefix="bench-clip-vocab-")
    vocab_size = write_tokenizer_files(vocab_dir)
    tokenizer = CLIPTokenizer.from_pretrained(vocab_dir, model_max_length=SD15_TEXT_ENCODER["max_position_embeddings"])
    with torch.device(device):
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=vocab_size,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
                **SD15_TEXT_ENCODER,
            )
        )
        vae = AutoencoderKL(**SD15_VAE)
        unet = UNet2DConditionModel(**SD15_UNET)
    scheduler = PNDMScheduler(**SD_NOISE_SCHEDULE, skip_prk_steps=True, set_alpha_to_one=False)
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
    return pipeline.to(device, dtype)


def tiny_pipeline(device, dtype, seed: int):
    """The tests' tiny pipeline (tests/tiny_models.py), saved and loaded back as a user's model would be."""
    from diffusers import StableDiffusionPipeline
    from tiny_models import build_tiny_pipeline

    folder = build_tiny_pipeline(tempfile.mkdtemp(prefix="bench-tiny-sd-"), seed=seed)
    return StableDiffusionPipeline.from_pretrained(folder, torch_dtype=dtype).to(device)


def stock_generation(pipeline, prompts: list[str], args: argparse.Namespace) -> list:
    """What a user would write with stock diffusers: one pipeline call per batch, images kept as PIL."""
    import torch

    images = []
    for start in range(0, len(prompts), args.batch_size):
        generator = torch.Generator(device=pipeline.device).manual_seed(args.seed + start)
        images += pipeline(
            prompts[start : start + args.batch_size],
            num_inference_steps=args.inference_steps,
            guidance_scale=args.guidance_scale,
            height=args.resolution,
            width=args.resolution,
            generator=generator,
        ).images
    return images


def png_encoding_ms(images: list) -> float:
    """Wall-clock milliseconds to encode one image as PNG, as generate_image_set does on its main thread."""
    start = time.perf_counter()
    for image in images:
        image.save(io.BytesIO(), format="PNG")
    return (time.perf_counter() - start) * 1e3 / len(images)


def timed(function, device, clock: str) -> float:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.process_time() - cpu if clock == "cpu" else time.perf_counter() - wall


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import diffusers
    import torch
    from accelerate import Accelerator

    from pipelines.generation import GenerationSettings, generate_image_set

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible")
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    accelerator = Accelerator(cpu=args.device == "cpu")
    device = accelerator.device
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    build = sd15_pipeline if args.model == "sd15" else tiny_pipeline
    pipeline = build(device, dtype, args.seed)
    pipeline.set_progress_bar_config(disable=True)

    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.num_images)]
    settings = GenerationSettings(
        base_model=f"benchmark-{args.model}",
        prompts=PROMPTS,
        num_images=args.num_images,
        num_inference_steps=args.inference_steps,
        guidance_scale=args.guidance_scale,
        resolution=args.resolution,
        seed=args.seed,
        scheduler="model",  # both sides use the pipeline's own
    )
    scratch = tempfile.mkdtemp(prefix="bench-generation-")

    def ours() -> None:
        folder = tempfile.mkdtemp(dir=scratch)  # a fresh folder: generate_image_set skips images already there
        generate_image_set(pipeline, os.path.join(folder, "forget"), settings, args.batch_size, accelerator)

    stock_images = []

    def stock() -> None:
        stock_images[:] = stock_generation(pipeline, prompts, args)

    seconds = {"stock": [], "ours": []}
    try:
        for round_index in range(args.warmup + args.rounds):
            order = ("stock", "ours") if round_index % 2 == 0 else ("ours", "stock")
            for side in order:
                elapsed = timed(ours if side == "ours" else stock, device, args.clock)
                if round_index >= args.warmup:
                    seconds[side].append(elapsed)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    png_ms = png_encoding_ms(stock_images)
    rates = {side: args.num_images / statistics.median(times) for side, times in seconds.items()}
    # Paired: stock's time over ours in the same round, median over rounds (robust to a slow spell).
    paired = statistics.median(s / o for s, o in zip(seconds["stock"], seconds["ours"]))
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    )
    summary = {
        "stock_images_per_s": round(rates["stock"], 3),
        "ours_images_per_s": round(rates["ours"], 3),
        "ratio": round(rates["ours"] / rates["stock"], 4),
        "paired_ratio": round(paired, 4),
        "png_ms_per_image": round(png_ms, 2),
        "label": args.label,
        "benchmark": "generation_speed",
        "device": args.device,
        "device_name": name,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "model": args.model,
        "resolution": args.resolution,
        "batch_size": args.batch_size,
        "num_images": args.num_images,
        "inference_steps": args.inference_steps,
        "guidance_scale": args.guidance_scale,
        "dtype": args.dtype,
        "clock": args.clock,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "seconds": {side: [round(t, 3) for t in times] for side, times in seconds.items()},
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
    }
    print(
        f"{args.model} pipeline, {args.resolution} px, batch {args.batch_size}, {args.inference_steps} steps, "
        f"guidance {args.guidance_scale}, {args.dtype} on {name}; {args.num_images} images per round, "
        f"median of {args.rounds} rounds ({args.clock} time)"
    )
    print(f"{'generator':<34} {'images/s':>9} {'s/round':>9}")
    for side, label in (("stock", "stock StableDiffusionPipeline loop"), ("ours", "generate_image_set (+ PNGs)")):
        print(f"{label:<34} {rates[side]:>9.3f} {statistics.median(seconds[side]):>9.3f}")
    print(f"PNG encoding: {png_ms:.1f} ms per image (generate_image_set writes PNGs on its main thread)")
    print(
        f"ratio ours / stock (images/s): {summary['ratio']:.3f}, paired per round {summary['paired_ratio']:.3f} "
        "(goal >= 0.95)"
    )
    emit(summary, args.json_out)
    return summary


if __name__ == "__main__":
    main()
