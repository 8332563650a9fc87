#!/usr/bin/env python
"""The digits unlearning benchmark: erase each digit in turn with train_erasediff.py and measure the
erased model with the judge, from the same seeds as the base model.

    python benchmarks/digits/run_benchmark.py                     # everything still missing, then the report
    python benchmarks/digits/run_benchmark.py --suite main --max_runs 5
    python benchmarks/digits/run_benchmark.py --report_only       # rewrite docs/benchmarks.md from the results

Suites: ``main`` erases every digit (10 classes × 3 seeds) with the default objective; ``compare`` runs
every variant of VARIANTS on COMPARE_DIGITS × 3 seeds. Each finished run is appended as one JSON line to
results.jsonl, and runs already there are skipped, so the benchmark can be completed across sittings.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from benchmarks.digits.train_base import DEFAULT_MODEL_DIR  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_FILE = os.path.join(HERE, "results.jsonl")
BASE_SCORES_FILE = os.path.join(HERE, "base_scores.json")
IMAGES_PER_CLASS = 50
SEEDS = (0, 1, 2)
COMPARE_DIGITS = (1, 3, 8)

# name → (train_erasediff.py flags on top of erase.ERASE_FLAGS, what it is)
VARIANTS = {
    "default": ({}, "shifted_noise, μ = 0.5 (U[0, 1)), λ bome"),
    "mu_1.0": ({"--forget_noise_mean": "1.0"}, "shifted_noise, μ = 1.0, λ bome"),
    "anchor": (
        {"--forget_target": "anchor", "--anchor_prompt": "a handwritten digit"},
        'anchor target ("a handwritten digit"), λ bome',
    ),
    "lambda_fixed": ({"--lambda_mode": "fixed", "--lambda_value": "1.0"}, "shifted_noise, λ fixed = 1"),
    "lambda_cosine": ({"--lambda_mode": "cosine"}, "shifted_noise, λ cosine (official code)"),
    "remain_only": (
        {"--lambda_mode": "fixed", "--lambda_value": "0"},
        "baseline: fine-tuning on D_r only (λ = 0)",
    ),
    "neggrad": (
        {"--forget_target": "neggrad", "--lambda_mode": "fixed", "--lambda_value": "1.0"},
        "baseline: gradient ascent on D_f (NegGrad), λ = 1",
    ),
}


def planned_runs(suite: str) -> list[tuple[str, int, int]]:
    """(variant, digit, seed) of every run a suite holds, main suite first."""
    runs = []
    if suite in ("main", "all"):
        runs += [("default", d, s) for s in SEEDS for d in range(10)]
    if suite in ("compare", "all"):
        runs += [(v, d, s) for s in SEEDS for d in COMPARE_DIGITS for v in VARIANTS if v != "default"]
    return runs


def read_results(path: str = RESULTS_FILE) -> list[dict]:
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def base_scores(model_dir: str, judge) -> dict:
    """The base model's scores (all ten digits, one Fréchet distance per forgotten digit), computed once."""
    from benchmarks.digits.measure import measure

    if os.path.isfile(BASE_SCORES_FILE):
        with open(BASE_SCORES_FILE, encoding="utf-8") as handle:
            recorded = json.load(handle)
        if recorded["images_per_class"] == IMAGES_PER_CLASS:
            return recorded
    scores = measure(_pipeline(model_dir), judge, IMAGES_PER_CLASS, forgotten=range(10)).to_dict()
    scores["frechet_by_forgotten"] = {str(k): v for k, v in scores["frechet_by_forgotten"].items()}
    with open(BASE_SCORES_FILE, "w", encoding="utf-8") as handle:
        json.dump(scores, handle, indent=2)
    return scores


def _pipeline(model_dir: str):
    from benchmarks.digits.measure import load_pipeline

    return load_pipeline(model_dir)


def run_one(model_dir: str, judge, base: dict, variant: str, digit: int, seed: int) -> dict:
    """One erasure and its measurement, as a results record."""
    from benchmarks.digits.erase import erased_pipeline, erasure_arguments, run_erasure
    from benchmarks.digits.measure import measure

    overrides = VARIANTS[variant][0]
    output_dir = tempfile.mkdtemp(prefix=f"digits-{variant}-{digit}-{seed}-")
    try:
        seconds = run_erasure(erasure_arguments(model_dir, digit, output_dir, seed, overrides))
        after = measure(erased_pipeline(model_dir, output_dir, overrides), judge, IMAGES_PER_CLASS, [digit])
    finally:
        shutil.rmtree(output_dir, ignore_errors=True)
    remain = [d for d in range(10) if d != digit]
    return {
        "variant": variant,
        "digit": digit,
        "seed": seed,
        "flags": overrides,
        "forget_accuracy_before": base["accuracy"][digit],
        "forget_accuracy_after": after.accuracy[digit],
        "remain_accuracy_before": sum(base["accuracy"][d] for d in remain) / len(remain),
        "remain_accuracy_after": after.remain_accuracy(digit),
        "frechet_before": base["frechet_by_forgotten"][str(digit)],
        "frechet_after": after.frechet_by_forgotten[digit],
        "forget_rejected_after": after.rejected[digit],
        "accuracy_after": after.accuracy,
        "rejected_after": after.rejected,
        "erase_seconds": round(seconds, 1),
        "images_per_class": IMAGES_PER_CLASS,
    }


def main(args: argparse.Namespace) -> None:
    import torch

    from benchmarks.digits.judge import Judge
    from benchmarks.digits.report import write_report

    torch.set_num_threads(args.threads)
    if not args.report_only:
        judge = Judge.load()
        base = base_scores(args.model_dir, judge)
        done = {(r["variant"], r["digit"], r["seed"]) for r in read_results()}
        todo = [run for run in planned_runs(args.suite) if run not in done]
        print(f"{len(done)} runs recorded, {len(todo)} to go", flush=True)
        for index, (variant, digit, seed) in enumerate(todo[: args.max_runs]):
            started = time.time()
            record = run_one(args.model_dir, judge, base, variant, digit, seed)
            with open(RESULTS_FILE, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
            print(
                f"[{index + 1}/{min(len(todo), args.max_runs)}] {variant} digit {digit} seed {seed}: forget "
                f"{record['forget_accuracy_before']:.2f}->{record['forget_accuracy_after']:.2f}, remain "
                f"{record['remain_accuracy_before']:.3f}->{record['remain_accuracy_after']:.3f}, FD "
                f"{record['frechet_before']:.2f}->{record['frechet_after']:.2f} ({time.time() - started:.0f} s)",
                flush=True,
            )
    write_report(read_results(), VARIANTS)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=["main", "compare", "all"], default="all")
    parser.add_argument("--max_runs", type=int, default=10**6, help="Stop after this many new runs.")
    parser.add_argument("--model_dir", default=DEFAULT_MODEL_DIR)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads.")
    parser.add_argument("--report_only", action="store_true", help="Only rewrite docs/benchmarks.md.")
    main(parser.parse_args())
