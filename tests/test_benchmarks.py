"""The benchmarks run end to end on the CPU with tiny settings and end with the JSON line the issue asks for.

Smoke tests only: one or two steps say nothing about speed (docs/performance.md holds the figures).
"""

import json
import os
import subprocess
import sys

from conftest import ROOT

BENCHMARKS = os.path.join(ROOT, "benchmarks")
STEP_KEYS = {"plain_ms", "erasediff_fixed_ms", "erasediff_bome_ms", "ratio_fixed", "ratio_bome"}
GENERATION_KEYS = {"stock_images_per_s", "ours_images_per_s", "ratio"}


def start(script: str, *arguments: str) -> subprocess.Popen:
    environment = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, os.path.join(BENCHMARKS, script), "--device", "cpu", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


def last_json_line(process: subprocess.Popen) -> dict:
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def test_step_and_generation_benchmarks_end_with_the_required_json(tmp_path):
    results = tmp_path / "results.jsonl"
    # Both at once: each uses one CPU thread.
    step = start(
        "step_speed.py",
        *("--model", "tiny", "--resolution", "64", "--steps", "2", "--warmup", "1"),
        *("--label", "smoke", "--json_out", str(results)),
    )
    generation = start(
        "generation_speed.py",
        *("--model", "tiny", "--num_images", "2", "--batch_size", "2", "--inference_steps", "2"),
        *("--rounds", "1", "--warmup", "0"),
    )
    step_summary, generation_summary = last_json_line(step), last_json_line(generation)

    assert STEP_KEYS <= step_summary.keys()
    assert all(step_summary[key] > 0 for key in STEP_KEYS)
    assert step_summary["variants"]["plain"]["ratio"] == 1.0
    assert step_summary["samples_per_step"] == 8  # 4 remain + 4 forget, the same for every variant
    assert json.loads(results.read_text().strip().splitlines()[-1]) == step_summary

    assert GENERATION_KEYS <= generation_summary.keys()
    assert all(generation_summary[key] > 0 for key in GENERATION_KEYS)

    # The GPU suite's summary renders such lines as a table row per variant.
    sys.path.insert(0, BENCHMARKS)
    from gpu_suite import write_summary

    write_summary(str(results), str(tmp_path / "summary.md"))
    table = (tmp_path / "summary.md").read_text()
    assert "| smoke | bome |" in table and "| smoke | plain |" in table
