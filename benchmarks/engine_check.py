#!/usr/bin/env python
"""Is a run under FSDP or DeepSpeed the run the script makes without them? One GPU, one process each.

Erases a digit from the digits model (benchmarks/digits/model) twice with the same seeds and arguments:
once as a plain single process, once through ``accelerate launch --config_file examples/accelerate/<config>.yaml``
with one process (FSDP and DeepSpeed still wrap the model and the optimizer then, which is where a wrong
gradient or step would show). It prints and appends one JSON line: the largest difference between the two
saved models against how far the plain run moved from the base, and whether it passed.

    python benchmarks/engine_check.py --config fsdp --lambda_mode bome --use_lora --steps 10

A combination in pipelines/engines.py's VERIFIED_ON_GPU must have passed this line. ``--config none`` runs
the plain path twice (the CPU rehearsal of the suite).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CONFIGS = ("fsdp", "deepspeed_zero2", "deepspeed_zero3", "none")
# A pass: the engine's model is within this share of the plain run's own change from the base.
RELATIVE_TOLERANCE = 0.01

sys.path.insert(0, ROOT)
from benchmarks.digits.data import prompt_for  # noqa: E402
from benchmarks.json_lines import emit  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=CONFIGS, required=True)
    parser.add_argument("--lambda_mode", choices=["fixed", "bome", "cosine"], default="fixed")
    parser.add_argument("--use_lora", action="store_true")
    parser.add_argument("--remain_target", choices=["teacher", "data", "both"], default="teacher")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--model_dir", default=os.path.join(HERE, "digits", "model"))
    parser.add_argument("--label", default=None)
    parser.add_argument("--json_out", default=None, help="Append the JSON line here too.")
    return parser.parse_args(argv)


def erasure_argv(args: argparse.Namespace, output_dir: str) -> list[str]:
    """The train_erasediff.py arguments both runs share (the digits model's main command, shortened)."""
    argv = [
        os.path.join(ROOT, "train_erasediff.py"),
        "--pretrained_model_name_or_path",
        args.model_dir,
        "--forget_prompts",
        prompt_for(3),
        "--remain_prompts",
        *[prompt_for(d) for d in range(10) if d != 3],
        "--resolution",
        "16",
        "--num_forget_images",
        "8",
        "--num_remain_images",
        "32",
        "--generation_steps",
        "10",
        "--max_train_steps",
        str(args.steps),
        "--learning_rate",
        "1e-4",
        "--lambda_mode",
        args.lambda_mode,
        "--remain_target",
        args.remain_target,
        "--mixed_precision",
        "no",
        "--seed",
        "0",
        "--report_to",
        "none",
        "--num_validation_images",
        "1",
        "--output_dir",
        output_dir,
    ]
    return argv + (["--use_lora"] if args.use_lora else [])


def saved_weights(output_dir: str, use_lora: bool) -> dict:
    from safetensors.torch import load_file

    if use_lora:
        return load_file(os.path.join(output_dir, "pytorch_lora_weights.safetensors"))
    return load_file(os.path.join(output_dir, "unet", "diffusion_pytorch_model.safetensors"))


def largest_difference(left: dict, right: dict) -> float:
    if set(left) != set(right):
        raise SystemExit(f"the two runs saved different tensors: {sorted(set(left) ^ set(right))[:5]}")
    return max(float((left[k].float() - right[k].float()).abs().max()) for k in left)


def run(command: list[str], environment: dict) -> None:
    finished = subprocess.run(command, env=environment, cwd=ROOT)
    if finished.returncode != 0:
        raise SystemExit(f"{' '.join(command[:6])} … ended with exit status {finished.returncode}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    environment = dict(os.environ, PYTHONUNBUFFERED="1")
    if args.device == "cpu":
        environment["CUDA_VISIBLE_DEVICES"] = ""
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        plain, engine = os.path.join(scratch, "plain"), os.path.join(scratch, "engine")
        run([sys.executable, *erasure_argv(args, plain)], environment)
        if args.config == "none":
            run([sys.executable, *erasure_argv(args, engine)], environment)
        else:
            config = os.path.join(ROOT, "examples", "accelerate", f"{args.config}.yaml")
            launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config]
            launch += ["--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no"]
            run(launch + erasure_argv(args, engine) + ["--allow_unverified_engine"], environment)
        plain_weights, engine_weights = saved_weights(plain, args.use_lora), saved_weights(engine, args.use_lora)
        if args.use_lora:  # B (lora.up in diffusers' file) starts at zero, A random: the change is B itself
            up = [t for k, t in plain_weights.items() if "lora_B" in k or "lora.up" in k]
            change = max(float(t.float().abs().max()) for t in up)
        else:
            change = largest_difference(plain_weights, saved_weights(args.model_dir, False))
    difference = largest_difference(plain_weights, engine_weights)
    record = {
        "benchmark": "engine_check",
        "label": args.label,
        "config": args.config,
        "lambda_mode": args.lambda_mode,
        "use_lora": args.use_lora,
        "remain_target": args.remain_target,
        "steps": args.steps,
        "max_abs_difference": difference,
        "plain_run_change": change,
        "passed": change > 0 and difference <= RELATIVE_TOLERANCE * change,
        "seconds": round(time.monotonic() - started, 1),
    }
    emit(record, args.json_out)


if __name__ == "__main__":
    main()
