#!/usr/bin/env python
"""EraseDiff's main command against ESD-x, ESD-u and UCE on the digits model, the whole run timed.

Each run is its own one-thread process, timed from start to exit (imports, loading, data, training and
saving: what a user waits for), then measured with the judge from the same seeds as run_benchmark.py. ESD and
UCE are written from their papers (esd.py, uce.py) with the issue's fixed settings; EraseDiff runs as
run_benchmark.py's main command (erase.MAIN_COMMAND_FLAGS) and its records also carry the run's own phase
breakdown (pipelines/phases.py).

    python benchmarks/digits/run_methods.py --shard 0/2 & python benchmarks/digits/run_methods.py --shard 1/2
    python benchmarks/digits/run_methods.py --methods esd_x --digits 3 --seeds 0

Records are appended to methods.jsonl, one JSON line per run, keyed by method, digit, seed and the method's
fingerprint (EraseDiff: its resolved arguments, as in run_benchmark.py; a baseline: its fixed settings), so
a sitting can be cut short and continued. ``run_benchmark.py --report_only`` tabulates them.
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

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from benchmarks.digits.run_benchmark import (  # noqa: E402
    COMPARE_DIGITS,
    IMAGES_PER_CLASS,
    SEEDS,
    fingerprint,
    read_results,
    resolved_arguments,
    scores_record,
    shard_spec,
)
from benchmarks.digits.train_base import DEFAULT_MODEL_DIR  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
METHODS_FILE = os.path.join(HERE, "methods.jsonl")
METHODS = {
    "erasediff": "EraseDiff, the main command (train_erasediff.py's defaults)",
    "erasediff_300_steps": "EraseDiff with 300 steps",
    "erasediff_200_steps": "EraseDiff with 200 steps",
    "esd_x": "ESD-x (cross-attention trained)",
    "esd_u": "ESD-u (everything but cross-attention trained)",
    "uce": "UCE (closed-form edit of the cross-attention keys and values)",
}
# train_erasediff.py flags on top of erase.MAIN_COMMAND_FLAGS, for each EraseDiff method.
ERASEDIFF_FLAGS = {
    "erasediff": {},
    "erasediff_300_steps": {"--max_train_steps": "300"},
    "erasediff_200_steps": {"--max_train_steps": "200"},
}


def method_command(method: str, digit: int, seed: int, model_dir: str, output_dir: str) -> list[str]:
    """The command line of one run; every method saves the erased UNet to ``output_dir``/unet."""
    from benchmarks.digits.erase import erasure_arguments

    if method in ERASEDIFF_FLAGS:
        script = os.path.join(ROOT, "train_erasediff.py")
        return [
            sys.executable,
            script,
            *erasure_arguments(model_dir, digit, output_dir, seed, ERASEDIFF_FLAGS[method]),
        ]
    common = ["--digit", str(digit), "--seed", str(seed), "--model_dir", model_dir, "--output_dir", output_dir]
    if method in ("esd_x", "esd_u"):
        parameters = "xattn" if method == "esd_x" else "noxattn"
        return [sys.executable, "-m", "benchmarks.digits.esd", *common, "--parameters", parameters]
    if method == "uce":
        return [sys.executable, "-m", "benchmarks.digits.uce", *common]
    raise ValueError(f"unknown method {method!r}")


def method_fingerprint(method: str, digit: int, seed: int, model_dir: str) -> str:
    """What decides a run's record: EraseDiff's resolved arguments, or a baseline's fixed settings."""
    if method in ERASEDIFF_FLAGS:
        from benchmarks.digits.erase import erasure_arguments

        placeholder = os.path.join(tempfile.gettempdir(), "digits-fingerprint-placeholder")
        arguments = erasure_arguments(model_dir, digit, placeholder, seed, ERASEDIFF_FLAGS[method])
        return fingerprint(resolved_arguments(arguments, digit))
    from benchmarks.digits import esd, uce

    settings = {
        "method": method,
        "digit": digit,
        "seed": seed,
        "images_per_class": IMAGES_PER_CLASS,
        "esd": [esd.ITERATIONS, esd.LEARNING_RATE, esd.BATCH_SIZE, esd.SAMPLING_STEPS, esd.NEGATIVE_GUIDANCE],
        "uce": [uce.RIDGE, uce.TARGET_PROMPT],
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def one_thread_environment() -> dict:
    """This environment with every thread pool at one thread (the benchmark's rule on a shared machine)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def run_method(method: str, digit: int, seed: int, model_dir: str, judge, base: dict) -> dict:
    """One timed run and its measurement, as a methods.jsonl record."""
    from benchmarks.digits.measure import load_pipeline, measure
    from pipelines.phases import parse_phase_lines

    output_dir = tempfile.mkdtemp(prefix=f"digits-{method}-{digit}-{seed}-")
    try:
        command = method_command(method, digit, seed, model_dir, output_dir)
        started = time.time()
        finished = subprocess.run(
            command, cwd=ROOT, env=one_thread_environment(), capture_output=True, text=True, check=False
        )
        seconds = time.time() - started
        if finished.returncode != 0:
            raise RuntimeError(f"{method} digit {digit} seed {seed} failed:\n{finished.stderr[-3000:]}")
        after = measure(load_pipeline(model_dir, os.path.join(output_dir, "unet")), judge, IMAGES_PER_CLASS, [digit])
    finally:
        shutil.rmtree(output_dir, ignore_errors=True)
    record = {
        "method": method,
        "digit": digit,
        "seed": seed,
        "fingerprint": method_fingerprint(method, digit, seed, model_dir),
        "process_seconds": round(seconds, 1),
        **scores_record(base, after, digit),
    }
    if method in ERASEDIFF_FLAGS:
        record["phase_seconds"] = parse_phase_lines(finished.stdout + finished.stderr)
    return record


def _kind(method: str) -> str:
    """EraseDiff's methods share records by fingerprint (a changed default moves a record to another of them)."""
    return "erasediff" if method in ERASEDIFF_FLAGS else method


def missing(planned: list[tuple[str, int, int]], model_dir: str, path: str) -> list[tuple[str, int, int]]:
    """The planned (method, digit, seed) runs that no record in ``path`` holds under today's fingerprint."""
    recorded = {(_kind(r["method"]), r["fingerprint"]) for r in read_results(path)}
    return [run for run in planned if (_kind(run[0]), method_fingerprint(*run, model_dir)) not in recorded]


def current_records(model_dir: str, path: str = METHODS_FILE) -> dict[str, list[dict]]:
    """Each method's records made under today's fingerprints, for the report."""
    recorded = {(_kind(r["method"]), r["fingerprint"]): r for r in read_results(path)}
    grouped: dict[str, list[dict]] = {method: [] for method in METHODS}
    for seed in SEEDS:
        for digit in COMPARE_DIGITS:
            for method in METHODS:
                record = recorded.get((_kind(method), method_fingerprint(method, digit, seed, model_dir)))
                if record is not None:
                    grouped[method].append({**record, "method": method})
    return grouped


def main(args: argparse.Namespace) -> None:
    import torch

    from benchmarks.digits.judge import Judge
    from benchmarks.digits.run_benchmark import base_scores

    torch.set_num_threads(1)
    judge = Judge.load()
    base = base_scores(args.model_dir, judge)
    planned = [(m, d, s) for s in args.seeds for d in args.digits for m in args.methods]
    shard, shards = args.shard
    todo = missing(planned[shard::shards], args.model_dir, args.results_file)  # see run_benchmark.py
    print(f"{len(planned)} runs planned, {len(todo)} to go in this shard", flush=True)
    for index, (method, digit, seed) in enumerate(todo):
        record = run_method(method, digit, seed, args.model_dir, judge, base)
        with open(args.results_file, "a", encoding="utf-8") as handle:  # one line per append
            handle.write(json.dumps(record) + "\n")
        print(
            f"[{index + 1}/{len(todo)}] {method} digit {digit} seed {seed}: {record['process_seconds']:.1f} s, "
            f"forget {record['forget_accuracy_after']:.2f}, remain {record['remain_accuracy_after']:.3f}, "
            f"FD {record['frechet_before']:.2f}->{record['frechet_after']:.2f}",
            flush=True,
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def numbers(value: str) -> list[int]:
        return [int(part) for part in value.split(",")]

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--methods", type=lambda v: v.split(","), default=list(METHODS), help="Of: " + ", ".join(METHODS)
    )
    parser.add_argument("--digits", type=numbers, default=list(COMPARE_DIGITS))
    parser.add_argument("--seeds", type=numbers, default=list(SEEDS))
    parser.add_argument("--model_dir", default=DEFAULT_MODEL_DIR)
    parser.add_argument("--results_file", default=METHODS_FILE, help="Where records are read and appended.")
    parser.add_argument("--shard", type=shard_spec, default=(0, 1), help="K/N: every N-th missing run from the K-th.")
    args = parser.parse_args(argv)
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown method {unknown[0]}; choose from {', '.join(METHODS)}")
    return args


if __name__ == "__main__":
    main(parse_args())
