#!/usr/bin/env python
"""Every GPU figure of issues 5, 8, 15, 17 and 18 in one command, most important first, within a time budget.

Issue 5's SD-1.5-shaped measurements come first; issue 8's SDXL-shaped ones (1024 px, LoRA and full
fine-tuning, batch 1 + 1) follow them and run when the budget still allows, then issue 17's FLUX.1-dev- and
SD3.5-Large-shaped transformers (group ``flow_families``, 1024 px, LoRA, batch 1 + 1); issue 18's engine
checks (group ``engines``, FSDP and DeepSpeed against the plain run) come after them and need DeepSpeed's wheel.

Each measurement runs as its own process (a clean peak-memory count, and a crash or an out-of-memory error
costs only that line) and appends its JSON line to ``<out>/gpu_results.jsonl`` as soon as it finishes;
one that fails or runs out of time appends ``{"label": ..., "error": ...}`` instead. A measurement whose
estimate no longer fits the budget is skipped and recorded as such. At the end ``<out>/gpu_summary.md``
holds the table for docs/performance.md. All output also goes to ``<out>/gpu_suite.log``.

    python3 benchmarks/gpu_suite.py --out "${OUT:-benchmarks/results}"

docs/performance.md gives the full command for a machine without diffusers (wheels in .whl/).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
STEP = os.path.join(HERE, "step_speed.py")
GENERATION = os.path.join(HERE, "generation_speed.py")
ENGINE = os.path.join(HERE, "engine_check.py")
RUN_TIME = os.path.join(HERE, "run_time.py")
SD15 = ["--device", "cuda", "--model", "sd15"]
SDXL = ["--device", "cuda", "--model", "sdxl", "--resolution", "1024", "--mixed_precision", "bf16"]
FLUX = ["--device", "cuda", "--model", "flux", "--resolution", "1024", "--mixed_precision", "bf16"]
SD35 = ["--device", "cuda", "--model", "sd3", "--resolution", "1024", "--mixed_precision", "bf16"]
# On the CPU rehearsal each GPU shape becomes the tiny denoiser of the same family.
REHEARSAL_MODELS = {"sd15": "tiny", "sdxl": "tiny_sdxl", "flux": "tiny_flux", "sd3": "tiny_sd3"}
# Both issue-17 lines: LoRA rank 4 on the family's default targets, gradient checkpointing, batch 1 + 1.
FLOW_LINE = ["--batch_size", "1", "--use_lora", "--gradient_checkpointing", "--variants", "fixed,bome"]
FLOW_LINE += ["--steps", "5", "--warmup", "2"]

# (label, script, arguments, estimated seconds, what it answers). Most important first; GROUPS names them.
MEASUREMENTS = [
    (
        "full_bf16",
        STEP,
        SD15
        + ["--mixed_precision", "bf16", "--variants", "fixed,bome,cosine,bome_teacher", "--steps", "10"]
        + ["--warmup", "3"],
        75,
        "goal 1 (ratios) and goal 2 (samples/s, MFU) for full fine-tuning, batch 8 + 8, every variant",
    ),
    (
        "defaults_full_bf16",
        STEP,
        SD15
        + ["--mixed_precision", "bf16", "--batch_size", "16", "--forget_batch_size", "4"]
        + ["--variants", "bome,bome_teacher,default,fixed_teacher,teacher_forward", "--steps", "10", "--warmup", "2"],
        110,
        "issues 14 and 15: the default step (bome with the teacher target, λ on one step in ten) at the default "
        "batch 16 + 4, full fine-tuning: its ratio to the plain step beside the teacher's forward alone, fixed λ "
        "with the teacher, bome on every step, and peak memory",
    ),
    (
        "memory_full_8bit_gc_b1",
        STEP,
        SD15
        + ["--batch_size", "1", "--use_8bit_adam", "--gradient_checkpointing", "--variants", "fixed,bome"]
        + ["--steps", "5", "--warmup", "2"],
        50,
        "goal 3: peak memory, full fine-tuning, 8-bit Adam, gradient checkpointing, batch 1 + 1",
    ),
    (
        "memory_lora_b1",
        STEP,
        SD15 + ["--batch_size", "1", "--use_lora", "--variants", "fixed,bome", "--steps", "5", "--warmup", "2"],
        45,
        "goal 3: peak memory, LoRA rank 4, batch 1 + 1",
    ),
    (
        "lora_bf16",
        STEP,
        SD15 + ["--use_lora", "--steps", "8", "--warmup", "3"],
        50,
        "goal 2: LoRA samples/s and MFU, batch 8 + 8",
    ),
    (
        "generation_sd15",
        GENERATION,
        SD15 + ["--batch_size", "4", "--num_images", "8", "--rounds", "3", "--warmup", "1"],
        70,
        "goal 4: images/s of generate_image_set against stock StableDiffusionPipeline, batch 4, 50 steps",
    ),
    (
        "full_bf16_b4",
        STEP,
        SD15 + ["--batch_size", "4", "--steps", "10", "--warmup", "3"],
        50,
        "goal 1 at train_erasediff.py's default batch, 4 + 4",
    ),
    (
        "full_bf16_prefetch_draws",
        STEP,
        SD15 + ["--variants", "fixed,bome", "--prefetch_draws", "--steps", "8", "--warmup", "3"],
        45,
        "proposed: draws for the next micro-batch on a background thread",
    ),
    (
        "full_bf16_unfused_adam",
        STEP,
        SD15 + ["--variants", "fixed", "--unfused_adam", "--steps", "8", "--warmup", "3"],
        40,
        "issue 15: AdamW's default kernels against the fused AdamW that train_erasediff.py now uses",
    ),
    (
        "full_bf16_sdpa_cudnn",
        STEP,
        SD15 + ["--variants", "fixed", "--sdpa", "cudnn", "--steps", "8", "--warmup", "3"],
        40,
        "switch not in train_erasediff.py: cuDNN attention",
    ),
    (
        "full_bf16_channels_last",
        STEP,
        SD15 + ["--variants", "fixed", "--channels_last", "--steps", "8", "--warmup", "3"],
        40,
        "switch not in train_erasediff.py: channels_last",
    ),
    (
        "full_bf16_b16",
        STEP,
        SD15 + ["--batch_size", "16", "--variants", "fixed", "--steps", "6", "--warmup", "2"],
        50,
        "goal 2 at a larger batch: 16 + 16 samples per step",
    ),
    (
        "full_bf16_compile",
        STEP,
        SD15 + ["--variants", "fixed", "--compile", "--steps", "8", "--warmup", "3"],
        200,
        "switch not in train_erasediff.py: torch.compile (compilation time excluded by the warm-up)",
    ),
    # Issue 8: SDXL-shaped (random weights), after every SD-1.5 figure.
    (
        "sdxl_lora_gc_b1",
        STEP,
        SDXL
        + ["--batch_size", "1", "--use_lora", "--gradient_checkpointing", "--variants", "fixed,bome"]
        + ["--steps", "5", "--warmup", "2"],
        60,
        "issue 8: SDXL 1024 px, LoRA rank 4, gradient checkpointing, batch 1 + 1: ms/step and peak memory",
    ),
    (
        "sdxl_full_8bit_gc_b1",
        STEP,
        SDXL
        + ["--batch_size", "1", "--use_8bit_adam", "--gradient_checkpointing", "--variants", "fixed,bome"]
        + ["--steps", "5", "--warmup", "2"],
        70,
        "issue 8: SDXL 1024 px, full fine-tuning, 8-bit Adam, gradient checkpointing, batch 1 + 1: ms/step and "
        "peak memory",
    ),
    # Issue 17: the flow-matching transformers, random weights in bf16 (estimates: the 12 B model's random init
    # on the card and 21 steps of about 2 s; the meta-device FLOP count, a few seconds of CPU).
    (
        "flux_lora_gc_b1",
        STEP,
        FLUX + FLOW_LINE,
        150,
        "issue 17: FLUX.1-dev-shaped transformer (11.90 G parameters), 1024 px (4096 image + 512 text tokens), "
        "LoRA rank 4, gradient checkpointing, batch 1 + 1: ms/step, ratios, MFU and peak memory; expected, to be "
        "measured: bf16 weights 23.8 GB (22.2 GiB) plus about 3-5 GiB of checkpointed activations, so 25-27 GiB",
    ),
    (
        "sd35_lora_gc_b1",
        STEP,
        SD35 + FLOW_LINE,
        100,
        "issue 17: SD3.5-Large-shaped transformer (8.06 G parameters), 1024 px (4096 image + 333 text tokens), "
        "LoRA rank 4, gradient checkpointing, batch 1 + 1: ms/step, ratios, MFU and peak memory; expected, to be "
        "measured: bf16 weights 16.1 GB (15.0 GiB) plus about 2-3 GiB of checkpointed activations, so 17-18 GiB",
    ),
]

# Issue 18: each engine against the plain run on the same seeds, one process on the card. A line that
# passes is what lets pipelines/engines.py's VERIFIED_ON_GPU take that cell (full runs that FSDP or ZeRO-3
# shard use --remain_target data: the teacher's swap is refused there).
ENGINE_LINES = [
    ("fsdp", "fixed", True, "teacher"),
    ("fsdp", "fixed", False, "data"),
    ("fsdp", "bome", True, "teacher"),
    ("fsdp", "bome", False, "data"),
    ("deepspeed_zero2", "fixed", False, "teacher"),
    ("deepspeed_zero2", "fixed", True, "teacher"),
    ("deepspeed_zero3", "fixed", True, "teacher"),
    ("deepspeed_zero3", "fixed", False, "data"),
]
for config, rule, lora, target in ENGINE_LINES:
    MEASUREMENTS.append(
        (
            f"engine_{config.removeprefix('deepspeed_')}_{rule}_{'lora' if lora else 'full'}",
            ENGINE,
            ["--config", config, "--lambda_mode", rule, "--remain_target", target, "--steps", "10"]
            + (["--use_lora"] if lora else []),
            45,
            f"issue 18: {config} with --lambda_mode {rule}, {'LoRA' if lora else 'full'}: equal to the plain run",
        )
    )

# Issue 15: the whole default run, phase by phase, on random weights in the real shapes. SDXL takes LoRA with
# gradient checkpointing (batch 16 + 4 at 1024 px), 16 + 16 generated images and 50 steps to fit the call.
MEASUREMENTS += [
    (
        "whole_run_sd15",
        RUN_TIME,
        ["--model", "sd15", "--mixed_precision", "bf16"],
        180,
        "issue 15: the main command's whole run at 512 px, full fine-tuning in bf16: seconds per phase",
    ),
    (
        "whole_run_sdxl",
        RUN_TIME,
        ["--model", "sdxl", "--mixed_precision", "bf16", "--use_lora", "--gradient_checkpointing"]
        + ["--num_forget_images", "16", "--num_remain_images", "16", "--max_train_steps", "50"],
        300,
        "issue 15: an SDXL run at 1024 px (LoRA, gradient checkpointing, fewer images and steps): seconds per phase",
    ),
    # Issue 17 on a real device split (the CPU tests cannot split): whole tiny runs, bf16.
    (
        "whole_run_tiny_flux_t5_cpu",
        RUN_TIME,
        ["--model", "tiny_flux", "--mixed_precision", "bf16", "--use_lora", "--t5", "cpu"],
        60,
        "issue 17: a whole tiny FLUX LoRA run on the GPU with T5 kept on the CPU (--t5 cpu: its outputs moved to "
        "the GPU for the prompt cache, generation and validation): that it runs and saves; seconds per phase",
    ),
    (
        "whole_run_tiny_sd3_no_t5",
        RUN_TIME,
        ["--model", "tiny_sd3", "--mixed_precision", "bf16", "--t5", "drop"],
        60,
        "issue 17: a whole tiny SD3 full fine-tuning run on the GPU without T5 (--t5 drop): that it runs and "
        "saves; seconds per phase",
    ),
]

# Each group runs alone with --only <group>; its estimate is the sum of its lines'.
GROUPS = {
    "step": ("full_bf16", "memory_full_8bit_gc_b1", "memory_lora_b1", "lora_bf16", "full_bf16_b4", "full_bf16_b16"),
    "defaults": ("defaults_full_bf16",),
    "generation": ("generation_sd15",),
    "switches": (
        "full_bf16_prefetch_draws",
        "full_bf16_unfused_adam",
        "full_bf16_sdpa_cudnn",
        "full_bf16_channels_last",
        "full_bf16_compile",
    ),
    "sdxl": ("sdxl_lora_gc_b1", "sdxl_full_8bit_gc_b1"),
    "flow_families": ("flux_lora_gc_b1", "sd35_lora_gc_b1"),
    "engines": tuple(label for label, script, *_ in MEASUREMENTS if script == ENGINE),
    "whole_run": ("whole_run_sd15", "whole_run_sdxl"),
    "flow_whole_runs": ("whole_run_tiny_flux_t5_cpu", "whole_run_tiny_sd3_no_t5"),
}


def group_estimates() -> dict[str, int]:
    """Estimated seconds of each group."""
    estimates = {label: estimate for label, _, _, estimate, _ in MEASUREMENTS}
    return {name: sum(estimates[label] for label in labels) for name, labels in GROUPS.items()}


ENVIRONMENT_PROBE = """
import json, importlib
record = {"label": "environment", "python": __import__("sys").version.split()[0]}
for name in ("torch", "diffusers", "transformers", "accelerate", "peft", "bitsandbytes"):
    try:
        record[name] = importlib.import_module(name).__version__
    except Exception as error:
        record[name] = f"missing: {type(error).__name__}: {error}"[:200]
import torch
record["cuda"] = torch.version.cuda
record["cudnn"] = torch.backends.cudnn.version()
record["device_name"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
print(json.dumps(record))
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(HERE, "results"), help="Folder for the JSON lines and log.")
    parser.add_argument("--budget_s", type=float, default=540, help="Start nothing that would end after this.")
    parser.add_argument(
        "--only",
        default=None,
        help="Comma-separated labels or group names (" + ", ".join(GROUPS) + ") to run (default: all, in order).",
    )
    parser.add_argument(
        "--rehearse_on_cpu",
        action="store_true",
        help="Run the same sequence with the tiny model on the CPU for a step or two (checks the suite itself).",
    )
    return parser.parse_args(argv)


def rehearsal(script: str, arguments: list[str]) -> list[str]:
    """The CPU stand-in of a measurement: tiny model of the same family, one step, few images, 64 px."""
    swapped = ["cpu" if a == "cuda" else REHEARSAL_MODELS.get(a, a) for a in arguments]
    if "--resolution" in swapped:  # the rehearsal sets its own
        at = swapped.index("--resolution")
        del swapped[at : at + 2]
    if script == ENGINE:  # the CPU runs no engine: the plain path twice, two steps
        at = swapped.index("--config")
        swapped[at + 1] = "none"
        return swapped + ["--device", "cpu", "--steps", "2"]
    if script == RUN_TIME:  # the tiny pipeline of the same family, a few images and steps
        model = arguments[arguments.index("--model") + 1]
        model = REHEARSAL_MODELS.get(model, model)
        quick = ["--num_forget_images", "2", "--num_remain_images", "2", "--generation_steps", "2"]
        return ["--model", model, *quick, "--max_train_steps", "2", "--num_validation_images", "1"]
    if script == GENERATION:
        return swapped + ["--rounds", "1", "--warmup", "0", "--num_images", "2", "--inference_steps", "2"]
    return swapped + ["--steps", "1", "--warmup", "0", "--resolution", "64"]


def append(path: str, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def run_one(command: list[str], timeout: float, log) -> tuple[int | None, str]:
    """Runs ``command``, copying its output to ``log``; returns its exit status (None on timeout) and output."""
    environment = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        finished = subprocess.run(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, env=environment
        )
        output, status = finished.stdout, finished.returncode
    except subprocess.TimeoutExpired as expired:
        output = expired.stdout or ""
        output, status = output.decode(errors="replace") if isinstance(output, bytes) else output, None
    log.write(output)
    log.flush()
    return status, output


def write_summary(results_path: str, summary_path: str) -> None:
    """A markdown table of the step and generation measurements, for docs/performance.md."""
    records = [json.loads(line) for line in open(results_path, encoding="utf-8") if line.strip()]
    lines = [
        "| measurement | variant | ms/step | samples/s | ratio to plain | TFLOP/s | MFU | peak memory |",
        "|---|---|---|---|---|---|---|---|",
    ]
    extra = []
    for record in records:
        label = record.get("label")
        if "error" in record or "skipped" in record:
            reason = (record.get("error") or record.get("skipped")).strip().splitlines()
            extra.append(f"- {label}: {reason[0]} ... {reason[-1]}" if len(reason) > 1 else f"- {label}: {reason[0]}")
        elif record.get("benchmark") == "step_speed":
            for variant, row in record["variants"].items():
                memory = f"{row['peak_memory_mib'] / 1024:.2f} GiB" if row["peak_memory_mib"] else "n/a"
                mfu = f"{row['mfu']:.1%}" if row["mfu"] is not None else "n/a"
                lines.append(
                    f"| {label} | {variant} | {row['ms']:.1f} | {row['samples_per_s']:.1f} | {row['ratio']:.3f} "
                    f"| {row['achieved_tflops']:.3g} | {mfu} | {memory} |"
                )
        elif record.get("benchmark") == "generation_speed":
            extra.append(
                f"- {label}: stock {record['stock_images_per_s']:.2f} images/s, ours {record['ours_images_per_s']:.2f}"
                f" images/s, ratio {record['ratio']:.3f}, PNG encoding {record['png_ms_per_image']:.0f} ms/image "
                f"(batch {record['batch_size']}, "
                f"{record['inference_steps']} steps, {record['resolution']} px)"
            )
        elif record.get("benchmark") == "engine_check":
            extra.append(
                f"- {label}: {'passed' if record['passed'] else 'FAILED'}, largest difference "
                f"{record['max_abs_difference']:.2e} against the plain run's change {record['plain_run_change']:.2e} "
                f"({record['steps']} steps, {record['seconds']:.0f} s)"
            )
        elif label == "environment":
            extra.append("- environment: " + ", ".join(f"{k} {v}" for k, v in record.items() if k != "label"))
    with open(summary_path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines + [""] + extra) + "\n")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    results = os.path.join(args.out, "gpu_results.jsonl")
    started = time.monotonic()
    only = None
    if args.only:
        only = {label for name in args.only.split(",") for label in GROUPS.get(name, (name,))}
    with open(os.path.join(args.out, "gpu_suite.log"), "a", encoding="utf-8") as log:
        status, output = run_one([sys.executable, "-c", ENVIRONMENT_PROBE], 120, log)
        last = output.strip().splitlines()[-1] if output.strip() else ""
        append(results, json.loads(last) if status == 0 else {"label": "environment", "error": output[-2000:]})
        print(last, flush=True)
        for label, script, arguments, estimate, purpose in MEASUREMENTS:
            if only is not None and label not in only:
                continue
            left = args.budget_s - (time.monotonic() - started)
            if left < estimate:
                append(results, {"label": label, "skipped": f"{left:.0f} s of budget left, needs about {estimate} s"})
                print(f"skipped {label}: {left:.0f} s left", flush=True)
                continue
            if args.rehearse_on_cpu:
                if "--compile" in arguments:
                    continue
                arguments = rehearsal(script, arguments)
            header = f"=== {label}: {purpose}"
            print(header, flush=True)
            log.write(header + "\n")
            command = [sys.executable, script, *arguments, "--label", label, "--json_out", results]
            begun = time.monotonic()
            status, output = run_one(command, min(left, max(2 * estimate, 120)), log)
            if status != 0:
                reason = "timed out" if status is None else f"exit status {status}"
                append(results, {"label": label, "error": f"{reason}: {output[-1500:]}"})
            print(f"{label}: {'ok' if status == 0 else 'failed'} in {time.monotonic() - begun:.0f} s", flush=True)
            print("\n".join(output.strip().splitlines()[-10:-1]), flush=True)
    write_summary(results, os.path.join(args.out, "gpu_summary.md"))
    print(f"wrote {results} and gpu_summary.md in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
