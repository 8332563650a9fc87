"""The benchmarks run end to end on the CPU with tiny settings and end with the JSON line the issue asks for.

Smoke tests only: one or two steps say nothing about speed (docs/performance.md holds the figures).
"""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

BENCHMARKS = os.path.join(ROOT, "benchmarks")
sys.path.insert(0, BENCHMARKS)
STEP_KEYS = {"plain_ms", "erasediff_fixed_ms", "erasediff_bome_ms", "ratio_fixed", "ratio_bome"}
GENERATION_KEYS = {"stock_images_per_s", "ours_images_per_s", "ratio"}
FLOW_LINES = ("flux_lora_gc_b1", "sd35_lora_gc_b1")  # the GPU suite's flow_families group, in order


def rehearsed_step_arguments(label: str) -> list[str]:
    """The CPU rehearsal of one of the GPU suite's step_speed lines (gpu_suite imports no torch)."""
    import gpu_suite

    _, script, arguments, _, _ = next(m for m in gpu_suite.MEASUREMENTS if m[0] == label)
    assert script == gpu_suite.STEP
    return gpu_suite.rehearsal(script, arguments)


def start(script: str, *arguments: str) -> subprocess.Popen:
    environment = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, os.path.join(BENCHMARKS, script), "--device", "cpu", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


def start_steps(*argument_lists: list[str]) -> subprocess.Popen:
    """``step_speed.main`` once per argument list, one after the other in one process: importing torch and
    diffusers takes about 7 s of CPU here, paid once."""
    code = (
        f"import sys; sys.path.insert(0, {BENCHMARKS!r}); import step_speed\n"
        f"for arguments in {argument_lists!r}:\n    step_speed.main(['--device', 'cpu', *arguments])"
    )
    environment = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment
    )


def json_lines(process: subprocess.Popen) -> list[dict]:
    """The JSON lines a finished process printed (each benchmark run ends with one), in order."""
    if not hasattr(process, "json_lines"):
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr[-3000:]
        process.json_lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return process.json_lines


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The smoke runs, started at once (each process uses one CPU thread) and shared by the tests below."""
    folder = tmp_path_factory.mktemp("benchmarks")
    processes = {
        "step": start_steps(
            [
                *("--model", "tiny", "--resolution", "64", "--steps", "2", "--warmup", "1"),
                *("--label", "smoke", "--json_out", str(folder / "results.jsonl")),
            ],
            # SDXL-shaped, as the GPU suite's sdxl_lora_gc_b1: a text_time UNet raises unless every variant
            # passes the pooled embedding and the time ids, so finishing shows that they reach the UNet.
            [
                *("--model", "tiny_sdxl", "--resolution", "64", "--steps", "1", "--warmup", "0"),
                *("--variants", "fixed,bome", "--use_lora", "--gradient_checkpointing"),
                *("--label", "smoke_sdxl", "--json_out", str(folder / "sdxl.jsonl")),
            ],
        ),
        # The flow_families lines as the suite rehearses them: tiny FLUX and SD3 transformers, LoRA on the
        # family's targets, gradient checkpointing, batch 1 + 1, 64 px, one step each; a process of their own,
        # as accelerate's state keeps the first run's mixed precision (bf16 autocast here, none above).
        "flow": start_steps(
            *(
                [*rehearsed_step_arguments(label), "--label", label, "--json_out", str(folder / "flow.jsonl")]
                for label in FLOW_LINES
            )
        ),
        "generation": start(
            "generation_speed.py",
            *("--model", "tiny", "--num_images", "2", "--batch_size", "2", "--inference_steps", "2"),
            *("--rounds", "1", "--warmup", "0"),
        ),
    }
    yield folder, processes
    for process in processes.values():
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_step_and_generation_benchmarks_end_with_the_required_json(runs, tmp_path):
    folder, processes = runs
    results = folder / "results.jsonl"
    step_summary, generation_summary = json_lines(processes["step"])[0], json_lines(processes["generation"])[-1]

    assert STEP_KEYS <= step_summary.keys()
    assert all(step_summary[key] > 0 for key in STEP_KEYS)
    assert step_summary["erasediff_bome_teacher_ms"] > 0 and step_summary["ratio_bome_teacher"] > 0  # the default
    assert step_summary["variants"]["plain"]["ratio"] == 1.0
    assert step_summary["samples_per_step"] == 8  # 4 remain + 4 forget, the same for every variant
    assert json.loads(results.read_text().strip().splitlines()[-1]) == step_summary

    assert GENERATION_KEYS <= generation_summary.keys()
    assert all(generation_summary[key] > 0 for key in GENERATION_KEYS)

    # The GPU suite's summary renders such lines as a table row per variant.
    from gpu_suite import write_summary

    write_summary(str(results), str(tmp_path / "summary.md"))
    table = (tmp_path / "summary.md").read_text()
    assert "| smoke | bome |" in table and "| smoke | plain |" in table


def test_sdxl_shaped_step_benchmark_runs_through_the_sdxl_conditioning(runs, tmp_path):
    folder, processes = runs
    summary = json_lines(processes["step"])[1]

    assert STEP_KEYS <= summary.keys()
    assert all(summary[key] > 0 for key in STEP_KEYS)
    assert list(summary["variants"]) == ["plain", "fixed", "bome"]
    assert (summary["model"], summary["resolution"], summary["samples_per_step"]) == ("tiny_sdxl", 64, 8)
    assert summary["use_lora"] and summary["gradient_checkpointing"]
    assert 0 < summary["trainable_parameters"] < 1_000_000  # LoRA adapters only (the UNet has 8.0 M)
    assert summary["flop_per_sample"] > 0  # counted on the meta device with pooled embedding and time ids

    from gpu_suite import write_summary

    assert json.loads((folder / "sdxl.jsonl").read_text()) == summary
    write_summary(str(folder / "sdxl.jsonl"), str(tmp_path / "summary.md"))
    assert "| smoke_sdxl | bome |" in (tmp_path / "summary.md").read_text()


def test_sdxl_shape_and_its_place_in_the_gpu_suite():
    """SDXL-base-1.0's UNet configuration and conditioning widths, and the suite's SDXL lines: after every
    SD-1.5 line, rehearsed on the CPU with the tiny SDXL-shaped UNet (no torch import here)."""
    import gpu_suite
    from model_shapes import DEFAULT_RESOLUTION, SDXL_UNET, pooled_width, text_encoder_widths

    assert SDXL_UNET["block_out_channels"] == (320, 640, 1280)
    assert SDXL_UNET["transformer_layers_per_block"] == (1, 2, 10)
    assert SDXL_UNET["attention_head_dim"] == (5, 10, 20)
    assert SDXL_UNET["addition_embed_type"] == "text_time" and SDXL_UNET["use_linear_projection"]
    assert text_encoder_widths("sdxl") == (768, 1280) and sum(text_encoder_widths("sdxl")) == 2048
    assert pooled_width("sdxl") == 1280  # 2816 = 6 time ids x 256 + 1280
    assert DEFAULT_RESOLUTION["sdxl"] == 1024 and SDXL_UNET["sample_size"] == 1024 // 8
    for model in ("tiny", "sd15", "tiny_sdxl"):
        assert sum(text_encoder_widths(model)) > 0

    labels = [m[0] for m in gpu_suite.MEASUREMENTS]
    steps = [(i, m) for i, m in enumerate(gpu_suite.MEASUREMENTS) if m[1] == gpu_suite.STEP]
    sdxl = [i for i, m in steps if "sdxl" in m[2]]
    assert [labels[i] for i in sdxl] == ["sdxl_lora_gc_b1", "sdxl_full_8bit_gc_b1"]
    assert min(sdxl) > max(i for i, m in steps if "sd15" in m[2])  # every SD-1.5 step line first
    for i in sdxl:
        _, script, arguments, _, _ = gpu_suite.MEASUREMENTS[i]
        rehearsed = gpu_suite.rehearsal(script, arguments)
        assert rehearsed[rehearsed.index("--model") + 1] == "tiny_sdxl"
        assert rehearsed[rehearsed.index("--device") + 1] == "cpu" and rehearsed.count("--resolution") == 1


def test_every_gpu_suite_line_belongs_to_one_group_that_runs_alone():
    import gpu_suite

    labels = [m[0] for m in gpu_suite.MEASUREMENTS]
    grouped = [label for labels_of_group in gpu_suite.GROUPS.values() for label in labels_of_group]
    assert sorted(grouped) == sorted(labels)  # each line in exactly one group
    assert gpu_suite.GROUPS["defaults"] == ("defaults_full_bf16",)
    assert labels.index("defaults_full_bf16") == 1  # right after the headline line
    assert all(estimate > 0 for estimate in gpu_suite.group_estimates().values())


def test_the_engine_check_compares_two_real_runs_and_its_cpu_rehearsal_passes(tmp_path):
    """The GPU suite's engine lines rehearsed on the CPU: the plain LoRA run twice, so the difference is 0 and
    the plain run's own change (its lora_B, which starts at zero) is what the 1% tolerance is taken of."""
    import gpu_suite

    line = next(m for m in gpu_suite.MEASUREMENTS if m[0] == "engine_fsdp_fixed_lora")
    rehearsed = gpu_suite.rehearsal(line[1], line[2])
    assert rehearsed[rehearsed.index("--config") + 1] == "none" and rehearsed[-2:] == ["--steps", "2"]
    results = tmp_path / "engine.jsonl"
    finished = subprocess.run(
        [sys.executable, line[1], *rehearsed, "--label", line[0], "--json_out", str(results)],
        env=dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    record = json.loads(results.read_text().strip().splitlines()[-1])
    assert (record["config"], record["use_lora"], record["label"]) == ("none", True, "engine_fsdp_fixed_lora")
    assert record["plain_run_change"] > 0 and record["max_abs_difference"] == 0.0 and record["passed"]


def test_the_whole_run_group_rehearses_on_the_cpu_with_each_phase_timed(tmp_path):
    """run_time.py through the GPU suite's whole_run group, on the tiny pipelines of the same families."""
    import gpu_suite

    assert gpu_suite.GROUPS["whole_run"] == ("whole_run_sd15", "whole_run_sdxl")
    finished = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, "gpu_suite.py"), "--rehearse_on_cpu", "--only", "whole_run"]
        + ["--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    with open(tmp_path / "gpu_results.jsonl", encoding="utf-8") as handle:
        records = {r["label"]: r for r in map(json.loads, handle) if "label" in r}
    for label, model in (("whole_run_sd15", "tiny"), ("whole_run_sdxl", "tiny_sdxl")):
        record = records[label]
        assert "error" not in record and record["model"] == model
        phases = record["phase_seconds"]
        assert phases["loading"] > 0 and phases["training"] > 0 and phases["data generation"] > 0
        assert abs(sum(phases.values()) - record["process_seconds"]) < 0.2  # "outside the script" closes the sum


def test_flux_and_sd3_shaped_step_benchmarks_run_through_the_flow_matching_path(runs, tmp_path):
    """ErasureStep with the family and a FlowMatchingNoising, and the flow-matching floor, on the tiny FLUX and
    SD3 transformers: a FLUX transformer raises without its pooled embedding, guidance and position ids, and
    an SD3 one without its pooled embedding, so finishing shows that the conditioning reaches them."""
    folder, processes = runs
    flux, sd3 = json_lines(processes["flow"])

    for summary, model, family, denoiser in (
        (flux, "tiny_flux", "flux", "FluxTransformer2DModel"),
        (sd3, "tiny_sd3", "sd3", "SD3Transformer2DModel"),
    ):
        assert STEP_KEYS <= summary.keys()
        assert all(summary[key] > 0 for key in STEP_KEYS)
        assert (summary["model"], summary["family"], summary["denoiser"]) == (model, family, denoiser)
        assert list(summary["variants"]) == ["plain", "fixed", "bome"]
        assert (summary["resolution"], summary["samples_per_step"], summary["mixed_precision"]) == (64, 2, "bf16")
        assert summary["use_lora"] and summary["gradient_checkpointing"] and summary["device"] == "cpu"
        assert 0 < summary["trainable_parameters"] < 100_000  # LoRA adapters only
        assert summary["flop_per_sample"] > 0  # counted on the meta device through the family's denoise

    from gpu_suite import write_summary

    records = [json.loads(line) for line in (folder / "flow.jsonl").read_text().splitlines()]
    assert [r["label"] for r in records] == list(FLOW_LINES) and records == [flux, sd3]
    write_summary(str(folder / "flow.jsonl"), str(tmp_path / "summary.md"))
    table = (tmp_path / "summary.md").read_text()
    assert "| flux_lora_gc_b1 | bome |" in table and "| sd35_lora_gc_b1 | plain |" in table


def test_flux_and_sd35_shapes_and_their_group_in_the_gpu_suite():
    """FLUX.1-dev's and SD3.5 Large's transformer configurations and conditioning, and the suite's
    flow_families group: after the SDXL lines, estimated to fit one short call, rehearsed with the tiny
    transformers."""
    import gpu_suite
    from model_shapes import (
        DEFAULT_RESOLUTION,
        FLUX_DEV_TRANSFORMER,
        SD35_LARGE_TRANSFORMER,
        latent_shape,
        pooled_width,
        text_encoder_widths,
        text_tokens,
    )

    flux = FLUX_DEV_TRANSFORMER
    assert (flux["num_layers"], flux["num_single_layers"]) == (19, 38)
    assert (flux["num_attention_heads"], flux["attention_head_dim"], flux["in_channels"]) == (24, 128, 64)
    assert flux["guidance_embeds"] and sum(flux["axes_dims_rope"]) == flux["attention_head_dim"]
    assert text_encoder_widths("flux") == (768, 4096) and pooled_width("flux") == 768 and text_tokens("flux") == 512
    sd35 = SD35_LARGE_TRANSFORMER
    assert (sd35["num_layers"], sd35["num_attention_heads"], sd35["attention_head_dim"]) == (38, 38, 64)
    assert sd35["caption_projection_dim"] == 38 * 64 and sd35["qk_norm"] == "rms_norm"
    assert (sd35["patch_size"], sd35["pos_embed_max_size"], sd35["in_channels"]) == (2, 192, 16)
    assert text_encoder_widths("sd3") == (768, 1280, 4096) and pooled_width("sd3") == 2048
    assert text_tokens("sd3") == 77 + 256
    for model in ("flux", "sd3"):
        assert DEFAULT_RESOLUTION[model] == 1024 and latent_shape(model, 1024) == (16, 128, 128)

    labels = [m[0] for m in gpu_suite.MEASUREMENTS]
    assert gpu_suite.GROUPS["flow_families"] == FLOW_LINES
    assert min(labels.index(label) for label in FLOW_LINES) > labels.index("sdxl_full_8bit_gc_b1")
    estimates = {m[0]: m[3] for m in gpu_suite.MEASUREMENTS}
    assert all(estimates[label] > 0 for label in FLOW_LINES)
    assert gpu_suite.group_estimates()["flow_families"] <= 300  # one short call, with room for the wheels
    # The device split --t5 cpu makes (T5 on the CPU, the rest on the GPU) has its own group of whole tiny runs.
    whole = {m[0]: m[2] for m in gpu_suite.MEASUREMENTS if m[0] in gpu_suite.GROUPS["flow_whole_runs"]}
    assert [arguments[arguments.index("--t5") + 1] for arguments in whole.values()] == ["cpu", "drop"]
    assert gpu_suite.group_estimates()["flow_whole_runs"] <= 300
    for label, model in zip(FLOW_LINES, ("tiny_flux", "tiny_sd3")):
        purpose = next(m[4] for m in gpu_suite.MEASUREMENTS if m[0] == label)
        assert "GiB" in purpose and "to be measured" in purpose  # the expected memory, not a measurement
        rehearsed = rehearsed_step_arguments(label)
        assert rehearsed[rehearsed.index("--model") + 1] == model
        assert rehearsed[rehearsed.index("--device") + 1] == "cpu" and rehearsed.count("--resolution") == 1


def test_the_committed_digits_records_keep_their_fingerprints():
    # A flag added later (issue 16's defences, issue 17's SD3/FLUX flags) or a default filled in later must
    # leave the recorded runs' fingerprints as they were: the runners would otherwise redo every run.
    from benchmarks.digits import run_benchmark, run_methods, run_robustness
    from benchmarks.digits.train_base import DEFAULT_MODEL_DIR

    planned = run_benchmark.planned_runs("all")
    assert not run_benchmark.missing_runs(planned, DEFAULT_MODEL_DIR, run_benchmark.RESULTS_FILE)
    recorded = {record["fingerprint"] for record in run_benchmark.read_results(run_robustness.RESULTS_FILE)}
    assert all(run_robustness.run_fingerprint(*run) in recorded for run in run_robustness.planned_runs())
    methods = run_benchmark.read_results(run_methods.METHODS_FILE)
    runs = {(record["method"], record["digit"], record["seed"]) for record in methods}
    assert not run_methods.missing(sorted(runs), DEFAULT_MODEL_DIR, run_methods.METHODS_FILE)
