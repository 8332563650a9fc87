#!/usr/bin/env python
"""The robustness benchmark: every attack of pipelines/evaluation/attacks on the digits models with one digit
erased, against the base model and the retrained oracle (the same model trained without the digit).

    python benchmarks/digits/train_base.py --exclude_digit 3 --output_dir benchmarks/digits/robustness/oracle-3
    python benchmarks/digits/run_robustness.py --shard 0/2 & python benchmarks/digits/run_robustness.py --shard 1/2
    python benchmarks/digits/run_robustness.py --report_only          # rewrite docs/robustness.md

Models: ``base`` (nothing erased), ``oracle`` (never saw the digit), and erasures by train_erasediff.py:
``erasediff`` (the main command's defaults), ``anchor``, ``neggrad``, ``adversarial`` (the defaults with
adversarial erasure) and ``resistant`` (adversarial erasure with relearning resistance). The erased models are kept under benchmarks/digits/robustness/models (the attacks and
a rerun need them); an oracle missing there is trained first. Each finished (model, digit, seed) is one JSON
line in robustness.jsonl with its fingerprint (the erasure's resolved arguments, the attack and evaluation
settings), so the benchmark resumes where it stopped and a changed setting never reuses an old record.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from benchmarks.digits.data import DIGIT_WORDS  # noqa: E402
from benchmarks.digits.run_benchmark import (  # noqa: E402
    IMAGES_PER_CLASS,
    read_results,
    resolved_arguments,
    scores_record,
    shard_spec,
)
from benchmarks.digits.run_benchmark import LATER_ARGUMENTS as BENCHMARK_LATER_ARGUMENTS  # noqa: E402
from benchmarks.digits.train_base import DEFAULT_MODEL_DIR  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_FILE = os.path.join(HERE, "robustness.jsonl")
WORK_DIR = os.path.join(HERE, "robustness")  # oracles and erased models (not in git)
DIGITS = (1, 3, 8)
SEEDS = (0, 1)
# The defence's settings on the digits: a new word every 10 of the 400 steps, 10 Adam steps each, at the
# learning rate the attacks use on the digits (attack_settings).
ADVERSARIAL_FLAGS = {"--adversarial_refresh_steps": "10", "--adversarial_learning_rate": "0.05"}
# Relearning resistance on top: f also after 5 simulated fine-tuning steps (Adam's first steps at 2e-4).
RESISTANCE_FLAGS = {"--relearn_resistance_steps": "5", "--relearn_resistance_step_size": "2e-4"}


def erasure_flags(model: str, digit: int) -> dict | None:
    """train_erasediff.py flags on top of erase.MAIN_COMMAND_FLAGS; None for the models that are not erasures."""
    flags = {
        "erasediff": {},
        "anchor": {"--forget_target": "anchor", "--anchor_prompt": "a handwritten digit"},
        "neggrad": {"--forget_target": "neggrad", "--lambda_mode": "fixed", "--lambda_value": "1.0"},
        "adversarial": {"--concept": DIGIT_WORDS[digit], **ADVERSARIAL_FLAGS},
        "resistant": {"--concept": DIGIT_WORDS[digit], **ADVERSARIAL_FLAGS, **RESISTANCE_FLAGS},
    }
    return flags.get(model)


# Arguments added after the first records, at the values that reproduce what ran before they existed: left
# out of the fingerprint, so those records keep theirs.
LATER_ARGUMENTS = {
    "relearn_resistance_steps": 0,
    "relearn_resistance_step_size": 1e-4,
    "relearn_resistance_weight": 1.0,
}
MODELS = ("base", "erasediff", "anchor", "neggrad", "adversarial", "oracle", "resistant")


def attack_settings(digit: int, seed: int):
    """The attack budget on the digits (docs/robustness.md): 8 images of the digit, 100 optimisation steps,
    2 adversarial tokens (the digits text encoder holds 8 tokens, and the prompt takes 6), 100 relearning steps
    measured every 10 (the oracle reaches 50 % in about 50)."""
    from benchmarks.digits.attack_setup import paraphrases
    from pipelines.evaluation.attacks.settings import AttackSettings

    return AttackSettings(
        paraphrase_prompts=paraphrases(digit),
        images=8,
        steps=100,
        learning_rate=0.05,
        batch_size=4,
        embedding_tokens=2,
        relearn_steps=100,
        relearn_learning_rate=1e-4,
        relearn_every=10,
        seed=seed,
    )


def evaluation_settings(digit: int, seed: int):
    from benchmarks.digits.attack_setup import digit_evaluation
    from benchmarks.digits.measure import EVAL_STEPS

    return digit_evaluation(digit, num_images=16, seed=seed, steps=EVAL_STEPS)


def model_dir_of(model: str, digit: int, seed: int) -> str:
    if model == "base":
        return DEFAULT_MODEL_DIR
    if model == "oracle":
        return os.path.join(WORK_DIR, f"oracle-{digit}")
    return os.path.join(WORK_DIR, "models", f"{model}-{digit}-{seed}")


def erasure_argv(model: str, digit: int, seed: int, output_dir: str | None = None) -> list[str]:
    """The train_erasediff.py arguments of an erasure, into its kept folder unless ``output_dir`` is given."""
    from benchmarks.digits.erase import erasure_arguments

    output_dir = output_dir or model_dir_of(model, digit, seed)
    return erasure_arguments(DEFAULT_MODEL_DIR, digit, output_dir, seed, erasure_flags(model, digit))


def run_fingerprint(model: str, digit: int, seed: int) -> str:
    """A hash of what decides a record: the erasure's resolved arguments (or the oracle's recipe), and the
    attack and evaluation settings."""
    decided = {
        "model": model,
        "digit": digit,
        "seed": seed,
        "attacks": asdict(attack_settings(digit, seed)),
        "evaluation": asdict(evaluation_settings(digit, seed)),
    }
    if erasure_flags(model, digit) is not None:
        # A stand-in folder: the kept one holds a finished run, which the script's checks refuse.
        placeholder = os.path.join(tempfile.gettempdir(), "digits-robustness-fingerprint")
        erasure = resolved_arguments(erasure_argv(model, digit, seed, placeholder), digit, BENCHMARK_LATER_ARGUMENTS)
        decided["erasure"] = {k: v for k, v in erasure.items() if LATER_ARGUMENTS.get(k, object()) != v}
    if model == "oracle":
        decided["oracle"] = {"exclude_digit": digit, "recipe": "train_base.py defaults"}
    return hashlib.sha256(json.dumps(decided, sort_keys=True, default=str).encode()).hexdigest()[:16]


def ensure_model(model: str, digit: int, seed: int) -> float:
    """Trains the oracle or runs the erasure unless the kept model is complete; returns the seconds spent."""
    folder = model_dir_of(model, digit, seed)
    if model == "base" or os.path.isfile(os.path.join(folder, "unet", "diffusion_pytorch_model.safetensors")):
        return 0.0
    shutil.rmtree(folder, ignore_errors=True)  # an interrupted run of ours: start it again
    started = time.time()
    if model == "oracle":
        command = [sys.executable, os.path.join(HERE, "train_base.py"), "--exclude_digit", str(digit)]
        subprocess.run([*command, "--output_dir", folder], check=True, cwd=ROOT)
    else:
        from benchmarks.digits.erase import run_erasure

        run_erasure(erasure_argv(model, digit, seed))
    return time.time() - started


def run_one(model: str, digit: int, seed: int, judge, base_scores: dict) -> dict:
    """The attacks on one model (and, for an erasure, its utility figures), as a record."""
    from benchmarks.digits.attack_setup import digit_detector
    from benchmarks.digits.measure import load_pipeline, measure
    from pipelines.evaluation.attacks.suite import run_attack_suite

    build_seconds = ensure_model(model, digit, seed)
    attacked = load_pipeline(model_dir_of(model, digit, seed))
    started = time.time()
    attacks = run_attack_suite(
        attacked,
        load_pipeline(DEFAULT_MODEL_DIR),
        evaluation_settings(digit, seed),
        attack_settings(digit, seed),
        digit_detector(judge, digit),
    )
    record = {
        "model": model,
        "digit": digit,
        "seed": seed,
        "fingerprint": run_fingerprint(model, digit, seed),
        "build_seconds": round(build_seconds, 1),
        "attack_seconds": round(time.time() - started, 1),
        "attacks": attacks,
    }
    if model != "base":
        after = measure(attacked, judge, IMAGES_PER_CLASS, [digit])
        record["utility"] = scores_record(base_scores, after, digit)
    return record


def planned_runs() -> list[tuple[str, int, int]]:
    return [(m, d, s) for s in SEEDS for d in DIGITS for m in MODELS]


def current_records(path: str = RESULTS_FILE) -> list[dict]:
    """The records made under today's fingerprints."""
    by_fingerprint = {r["fingerprint"]: r for r in read_results(path)}
    found = [by_fingerprint.get(run_fingerprint(*run)) for run in planned_runs()]
    return [r for r in found if r is not None]


def main(args: argparse.Namespace) -> None:
    import torch

    from benchmarks.digits.judge import Judge
    from benchmarks.digits.robustness_report import write_report
    from benchmarks.digits.run_benchmark import base_scores

    torch.set_num_threads(1)
    if not args.report_only:
        judge = Judge.load()
        base = base_scores(DEFAULT_MODEL_DIR, judge)
        planned = [run for run in planned_runs() if args.models is None or run[0] in args.models]
        shard, shards = args.shard
        recorded = {r["fingerprint"] for r in read_results(args.results_file)}
        todo = [run for run in planned[shard::shards] if run_fingerprint(*run) not in recorded]
        print(f"{len(planned)} runs planned, {len(todo)} to go in this shard", flush=True)
        for index, (model, digit, seed) in enumerate(todo):
            record = run_one(model, digit, seed, judge, base)
            with open(args.results_file, "a", encoding="utf-8") as handle:  # one line per append
                handle.write(json.dumps(record) + "\n")
            attacks = record["attacks"]["attacks"]
            print(
                f"[{index + 1}/{len(todo)}] {model} digit {digit} seed {seed}: "
                + ", ".join(f"{name} {result['success']:.2f}" for name, result in attacks.items())
                + f" (relearn to 50%: {attacks['relearn']['steps_to_half']}; {record['attack_seconds']:.0f} s)",
                flush=True,
            )
    write_report(current_records(args.results_file))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=lambda v: v.split(","), default=None, help="Of: " + ", ".join(MODELS))
    parser.add_argument("--results_file", default=RESULTS_FILE, help="Where records are read and appended.")
    parser.add_argument("--shard", type=shard_spec, default=(0, 1), help="K/N: every N-th planned run from the K-th.")
    parser.add_argument("--report_only", action="store_true", help="Only rewrite docs/robustness.md.")
    args = parser.parse_args(argv)
    unknown = [m for m in args.models or [] if m not in MODELS]
    if unknown:
        parser.error(f"--models: unknown model {unknown[0]}; choose from {', '.join(MODELS)}")
    return args


if __name__ == "__main__":
    main(parse_args())
