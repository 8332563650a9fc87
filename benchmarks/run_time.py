#!/usr/bin/env python
"""The whole run, phase by phase: train_erasediff.py's main command in a process of its own, timed from start
to exit, with the run's own breakdown (pipelines/phases.py: loading, data generation, encoding, training,
validation images, saving, evaluation, publishing).

    python benchmarks/run_time.py --model tiny       # `--concept "Van Gogh"` on a tiny SD pipeline built here
    python benchmarks/run_time.py --model digits     # digit 3 erased as benchmarks/digits runs the main command
    python benchmarks/run_time.py --model digits --repeats 3 --lambda_refresh_steps 1   # other flags: the script's
    python benchmarks/run_time.py --model sd15 --mixed_precision bf16   # GPU: SD-1.5's shapes, random weights

The script runs with one thread (``--threads``) and its defaults, apart from what the model's size dictates.
The table gives each phase's mean seconds and share over ``--repeats`` runs and "outside the script": process
time the run's clock does not see (the interpreter starting, the process exiting). The last line is one JSON
object; ``--json_out FILE`` also appends it to FILE.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))  # tiny_models: a tiny pipeline from configs, no download
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # model_shapes, generation_speed

from json_lines import emit  # noqa: E402

from pipelines.phases import PHASES, parse_phase_lines  # noqa: E402

OUTSIDE = "outside the script"
# The pixels each model is run at: the tiny pipelines' 16 px, the real shapes' native sizes.
RESOLUTIONS = {"tiny": 16, "tiny_sdxl": 16, "tiny_flux": 16, "tiny_sd3": 16, "digits": 16, "sd15": 512, "sdxl": 1024}


def build_model(model: str, folder: str) -> str:
    """Saves the pipeline ``model`` names to ``folder``: the tests' tiny ones (SD, SDXL, FLUX, SD3), or random weights in the shapes
    of SD-1.5 and SDXL-base-1.0 (benchmarks/model_shapes.py; a small CLIP vocabulary, no download)."""
    import tiny_models

    if model == "tiny":
        return tiny_models.build_tiny_pipeline(folder)
    if model == "tiny_sdxl":
        return tiny_models.build_tiny_sdxl_pipeline(folder)
    if model == "tiny_flux":
        return tiny_models.build_tiny_flux_pipeline(folder)
    if model == "tiny_sd3":
        return tiny_models.build_tiny_sd3_pipeline(folder)
    import torch
    from generation_speed import sd15_pipeline

    if model == "sd15":
        sd15_pipeline("cpu", torch.float32, seed=0).save_pretrained(folder)
        return folder
    return sdxl_shaped_pipeline(folder)


def sdxl_shaped_pipeline(folder: str) -> str:
    """An SDXL-base-1.0-shaped pipeline with random weights (UNet, SD VAE, CLIP-L and a CLIP-bigG-shaped
    second encoder with its projection), saved to ``folder``."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from model_shapes import (
        SD15_TEXT_ENCODER,
        SD15_VAE,
        SD_NOISE_SCHEDULE,
        SDXL_UNET,
        VAE_SCALING_FACTOR,
        pooled_width,
    )
    from tiny_models import write_tokenizer_files
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(0)
    vocab = tempfile.mkdtemp(prefix="run-time-vocab-")
    vocab_size = write_tokenizer_files(vocab)
    tokenizer = CLIPTokenizer.from_pretrained(vocab, model_max_length=77)
    ids = dict(vocab_size=vocab_size, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    big_g = dict(
        hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20, hidden_act="gelu"
    )
    pipeline = StableDiffusionXLPipeline(
        vae=AutoencoderKL(**{**SD15_VAE, "scaling_factor": VAE_SCALING_FACTOR["sdxl"], "force_upcast": True}),
        text_encoder=CLIPTextModel(CLIPTextConfig(**SD15_TEXT_ENCODER, **ids)),
        text_encoder_2=CLIPTextModelWithProjection(
            CLIPTextConfig(**{**SD15_TEXT_ENCODER, **big_g, "projection_dim": pooled_width("sdxl")}, **ids)
        ),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=UNet2DConditionModel(**SDXL_UNET),
        scheduler=EulerDiscreteScheduler(**SD_NOISE_SCHEDULE),
    )
    pipeline.save_pretrained(folder)
    return folder


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=tuple(RESOLUTIONS), default="tiny")
    parser.add_argument("--repeats", type=int, default=1, help="Runs to average (one after another).")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the run.")
    parser.add_argument("--json_out", default=None, help="Also append the JSON line to this file.")
    parser.add_argument("--label", default=None, help="Copied into the JSON line (the GPU suite's name for it).")
    args, script_flags = parser.parse_known_args(argv)  # the rest goes to train_erasediff.py
    args.script_flags = [flag for flag in script_flags if flag != "--"]
    return args


def main_command(model: str, model_dir: str, output_dir: str) -> list[str]:
    """train_erasediff.py's arguments: the main command, with only what the model's size dictates."""
    if model == "digits":
        from benchmarks.digits.erase import erasure_arguments

        return erasure_arguments(model_dir, 3, output_dir, seed=0)
    flags = ["--concept", "Van Gogh", "--resolution", str(RESOLUTIONS[model]), "--seed", "0", "--report_to", "none"]
    return ["--pretrained_model_name_or_path", model_dir, "--output_dir", output_dir, *flags]


def timed_run(arguments: list[str], threads: int) -> tuple[float, dict[str, float]]:
    """(process seconds, the run's phase seconds) of one train_erasediff.py process."""
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [sys.executable, os.path.join(ROOT, "train_erasediff.py"), *arguments]
    started = time.time()
    finished = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, check=False)
    seconds = time.time() - started
    if finished.returncode != 0:
        raise SystemExit(f"train_erasediff.py failed:\n{finished.stderr[-3000:]}")
    return seconds, parse_phase_lines(finished.stdout + finished.stderr)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    scratch = tempfile.mkdtemp(prefix="run-time-")
    try:
        if args.model == "digits":
            from benchmarks.digits.train_base import DEFAULT_MODEL_DIR

            model_dir = DEFAULT_MODEL_DIR
        else:
            model_dir = build_model(args.model, os.path.join(scratch, "model"))
        runs = []
        for repeat in range(args.repeats):
            output_dir = os.path.join(scratch, f"run-{repeat}")
            runs.append(
                timed_run([*main_command(args.model, model_dir, output_dir), *args.script_flags], args.threads)
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    process = sum(seconds for seconds, _ in runs) / len(runs)
    phases = {name: sum(p[name] for _, p in runs) / len(runs) for name in PHASES}
    phases[OUTSIDE] = max(process - sum(phases.values()), 0.0)
    print(f"train_erasediff.py on the {args.model} model, {args.repeats} run(s), {args.threads} thread(s)")
    print(f"{'phase':<20} {'seconds':>8} {'share':>6}")
    for name, seconds in phases.items():
        print(f"{name:<20} {seconds:>8.1f} {seconds / process:>6.0%}")
    print(f"{'whole process':<20} {process:>8.1f}")
    summary = {
        "benchmark": "run_time",
        "label": args.label,
        "model": args.model,
        "script_flags": args.script_flags,
        "repeats": args.repeats,
        "threads": args.threads,
        "process_seconds": round(process, 1),
        "phase_seconds": {name: round(seconds, 1) for name, seconds in phases.items()},
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    emit(summary, args.json_out)
    return summary


if __name__ == "__main__":
    main()
