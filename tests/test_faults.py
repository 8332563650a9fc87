"""Nothing lost, nothing misrecorded: kills during checkpoint rotation, unusable checkpoints, resumes with
other arguments, reruns into a used folder, the output-folder lock, a full disk, and signals."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, tiny_run_args, write_image_folder
from safetensors.torch import load_file

from pipelines.checkpoints import MANIFEST_FILE, list_checkpoints
from pipelines.errors import InputError, TrainingError
from pipelines.outputs import ARGS_FILE, LORA_WEIGHTS_FILE, check_output_dir
from pipelines.phases import parse_phase_lines
from pipelines.publishing import upload_ignore_patterns
from pipelines.run_folder import LOCK_FILE, OutputLock
from train_erasediff import main, parse_args

STEPS = ["--max_train_steps", "4", "--checkpointing_steps", "1", "--checkpoints_total_limit", "1"]
SUBPROCESS_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def arguments(model, output_dir, *extra):
    return tiny_run_args(
        model, output_dir, "--seed", "5", "--concept", "van gogh", "--use_lora", "--learning_rate", "1e-3", *extra
    )


def lora_weights(output_dir) -> dict:
    return load_file(os.path.join(str(output_dir), LORA_WEIGHTS_FILE))


def assert_same_weights(left: dict, right: dict) -> None:
    assert left.keys() == right.keys()
    for key in left:
        torch.testing.assert_close(left[key], right[key], rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def uninterrupted(tiny_model, tmp_path_factory):
    """The LoRA weights of a run of STEPS that nothing interrupted."""
    output = tmp_path_factory.mktemp("uninterrupted") / "run"
    main(parse_args(arguments(tiny_model, output, *STEPS)))
    return lora_weights(output)


@pytest.fixture(scope="module")
def finished_run(tiny_model, tmp_path_factory):
    """A finished run of two steps with checkpoints at both (a copy is made per test)."""
    output = tmp_path_factory.mktemp("finished") / "run"
    main(parse_args(arguments(tiny_model, output, "--max_train_steps", "2", "--checkpointing_steps", "1")))
    return output


def copy_of(folder, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    return target


def snapshot(folder) -> dict:
    return {
        os.path.relpath(os.path.join(root, name), folder): open(os.path.join(root, name), "rb").read()
        for root, _, names in os.walk(folder)
        for name in names
    }


def launch(model, output, *extra, piped: bool = False) -> subprocess.Popen:
    """train_erasediff.py as its own process (its output in text pipes with ``piped``)."""
    return subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "train_erasediff.py"), *arguments(model, output, *extra)],
        env=SUBPROCESS_ENV,
        stdout=subprocess.PIPE if piped else subprocess.DEVNULL,
        stderr=subprocess.PIPE if piped else subprocess.DEVNULL,
        text=True,
    )


# Checkpoint rotation under SIGKILL -------------------------------------------------------------------


@pytest.mark.parametrize("point", ["writing", "before_rename", "after_rename", "rotation"])
def test_a_kill_during_checkpoint_rotation_leaves_a_checkpoint_that_resumes_exactly(
    point, tiny_model, uninterrupted, tmp_path
):
    output = tmp_path / "killed"
    process = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tests", "killing_launcher.py"), *arguments(tiny_model, output, *STEPS)],
        env={**SUBPROCESS_ENV, "KILL_AT": point, "KILL_STEP": "2"},
        capture_output=True,
        timeout=300,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr.decode()[-2000:]
    complete = [p for _, p in list_checkpoints(str(output)) if os.path.isfile(os.path.join(p, MANIFEST_FILE))]
    assert complete, f"no complete checkpoint left after a kill at {point}: {os.listdir(output)}"
    assert not (output / LORA_WEIGHTS_FILE).exists()

    main(parse_args(arguments(tiny_model, output, *STEPS, "--resume_from_checkpoint", "latest")))
    assert_same_weights(lora_weights(output), uninterrupted)
    assert not [n for n in os.listdir(output) if n.endswith((".partial", ".deleting"))]


# Which checkpoint `latest` takes, and unusable checkpoints named explicitly ------------------------------


def test_latest_skips_incomplete_and_foreign_checkpoints_and_says_why(finished_run, tiny_model, tmp_path, caplog):
    output = copy_of(finished_run, tmp_path)
    os.remove(output / LORA_WEIGHTS_FILE)  # as if the run had died after its last checkpoint
    (output / "checkpoint-9").mkdir()  # empty
    shutil.copytree(output / "checkpoint-2", output / "checkpoint-8")
    os.remove(output / "checkpoint-8" / "optimizer.bin")  # a file missing
    shutil.copytree(output / "checkpoint-2", output / "checkpoint-7")
    manifest = json.loads((output / "checkpoint-7" / MANIFEST_FILE).read_text())
    (output / "checkpoint-7" / MANIFEST_FILE).write_text(json.dumps({**manifest, "run_id": "someone-else"}))

    caplog.set_level("INFO")
    main(parse_args(arguments(tiny_model, output, "--max_train_steps", "3", "--resume_from_checkpoint", "latest")))
    log = caplog.text
    assert "checkpoint-9: it has no erasediff_checkpoint.json" in log
    assert "checkpoint-8" in log and "optimizer.bin is missing" in log
    assert "checkpoint-7: it belongs to another run" in log
    assert f"Resumed from {output / 'checkpoint-2'} at step 2" in log


def test_a_truncated_checkpoint_named_explicitly_is_one_line_naming_the_file_and_an_intact_one(
    finished_run, tiny_model, tmp_path
):
    output = copy_of(finished_run, tmp_path)
    optimizer_file = output / "checkpoint-2" / "optimizer.bin"
    optimizer_file.write_bytes(optimizer_file.read_bytes()[:100])
    argv = arguments(
        tiny_model, output, "--max_train_steps", "3", "--resume_from_checkpoint", str(output / "checkpoint-2")
    )
    with pytest.raises(InputError) as caught:
        main(parse_args(argv))
    message = str(caught.value)
    assert "\n" not in message
    assert f"{optimizer_file} is truncated" in message
    assert f"resume from {output / 'checkpoint-1'} instead" in message


@pytest.mark.parametrize("name", ["trainable_parameters.safetensors", "optimizer.bin"])
def test_a_checkpoint_file_corrupted_at_its_size_is_named_and_skipped_by_latest(
    name, finished_run, tiny_model, tmp_path, caplog
):
    output = copy_of(finished_run, tmp_path)
    damaged = output / "checkpoint-2" / name
    content = bytearray(damaged.read_bytes())
    content[len(content) // 2 : len(content) // 2 + 64] = os.urandom(64)  # same size, other bytes
    damaged.write_bytes(bytes(content))
    named = str(output / "checkpoint-2")
    with pytest.raises(InputError) as caught:
        main(parse_args(arguments(tiny_model, output, "--max_train_steps", "3", "--resume_from_checkpoint", named)))
    assert str(caught.value) == (
        f"--resume_from_checkpoint {named} cannot be resumed from: {damaged} is corrupt "
        f"(its SHA-256 differs from the one written); resume from {output / 'checkpoint-1'} instead"
    )
    os.remove(output / LORA_WEIGHTS_FILE)
    caplog.set_level("INFO")
    main(parse_args(arguments(tiny_model, output, "--max_train_steps", "3", "--resume_from_checkpoint", "latest")))
    assert f"skipped {output / 'checkpoint-2'}: {damaged} is corrupt" in caplog.text
    assert f"Resumed from {output / 'checkpoint-1'} at step 1" in caplog.text


def test_a_checkpoint_with_unsafe_pickles_is_refused_without_suggesting_to_turn_the_check_off(
    finished_run, tiny_model, tmp_path
):
    import fractions

    output = copy_of(finished_run, tmp_path)
    scheduler_file = output / "checkpoint-2" / "scheduler.bin"
    torch.save({"last_epoch": fractions.Fraction(1, 3)}, scheduler_file)  # not a plain weights object
    manifest_path = output / "checkpoint-2" / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["scheduler.bin"] = {
        "bytes": scheduler_file.stat().st_size,
        "sha256": hashlib.sha256(scheduler_file.read_bytes()).hexdigest(),
    }
    manifest_path.write_text(json.dumps(manifest))
    argv = arguments(
        tiny_model, output, "--max_train_steps", "3", "--resume_from_checkpoint", str(output / "checkpoint-2")
    )
    with pytest.raises(InputError) as caught:
        main(parse_args(argv))
    message = str(caught.value)
    assert f"cannot load {scheduler_file}: it holds Python objects that are not loaded, for safety" in message
    assert "weights_only" not in message


# Resuming with other arguments -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changed, listed",
    [
        (["--learning_rate", "1.0"], "--learning_rate 0.001 (now 1.0)"),
        (["--train_method", "xattn", "--rank", "2"], "--rank 4 (now 2), --train_method full (now xattn)"),
        (["--forget_prompts", "a cat"], "--forget_prompts None (now ['a cat'])"),
        (["--train_batch_size", "2"], "--train_batch_size 4 (now 2)"),
        (["--mixed_precision", "bf16"], "--mixed_precision no (now bf16)"),
        (["--max_train_steps", "5", "--lr_scheduler", "linear"], "--lr_scheduler constant (now linear)"),
    ],
)
def test_resuming_with_run_defining_arguments_changed_is_refused_before_anything_is_written(
    changed, listed, finished_run, tiny_model, tmp_path
):
    output = copy_of(finished_run, tmp_path)
    before = snapshot(output)
    argv = arguments(tiny_model, output, "--max_train_steps", "2", *changed, "--resume_from_checkpoint", "latest")
    with pytest.raises(InputError) as caught:
        main(parse_args(argv))
    assert "was trained with other arguments" in str(caught.value)
    assert listed in str(caught.value)
    assert snapshot(output) == before


def test_resuming_may_change_checkpointing_and_lengthen_a_constant_schedule(finished_run, tiny_model, tmp_path):
    output = copy_of(finished_run, tmp_path)
    argv = arguments(
        tiny_model,
        output,
        "--max_train_steps",
        "3",
        "--checkpointing_steps",
        "5",
        "--resume_from_checkpoint",
        "latest",
    )
    main(parse_args(argv))
    recorded = json.loads((output / ARGS_FILE).read_text())
    assert recorded["max_train_steps"] == 3 and recorded["checkpointing_steps"] == 5
    assert recorded["learning_rate"] == 1e-3


def test_a_linear_schedule_cannot_be_lengthened_on_resume(finished_run, tiny_model, tmp_path):
    finished = copy_of(finished_run, tmp_path)
    shutil.rmtree(finished / "checkpoint-2")
    shutil.rmtree(finished / "checkpoint-1")
    output = tmp_path / "linear"
    main(
        parse_args(
            arguments(
                tiny_model, output, "--max_train_steps", "2", "--checkpointing_steps", "1", "--lr_scheduler", "linear"
            )
        )
    )
    argv = arguments(
        tiny_model, output, "--max_train_steps", "3", "--lr_scheduler", "linear", "--resume_from_checkpoint", "latest"
    )
    with pytest.raises(InputError, match=r"--max_train_steps 2 \(now 3\)"):
        main(parse_args(argv))


# Reruns into a used folder, and the lock --------------------------------------------------------------


def test_a_rerun_into_a_finished_folder_is_refused_and_changes_nothing(finished_run, tiny_model, tmp_path, capsys):
    output = copy_of(finished_run, tmp_path)
    before = snapshot(output)
    for extra in ([], ["--overwrite_output_dir"]):
        with pytest.raises(SystemExit):
            parse_args(arguments(tiny_model, output, *extra))
        assert (
            "holds a finished EraseDiff run; continue it with --resume_from_checkpoint latest"
            in capsys.readouterr().err
        )
    assert snapshot(output) == before


def test_a_finished_folder_without_checkpoints_cannot_be_restarted_through_latest(tiny_model, tmp_path):
    output = tmp_path / "no-checkpoints"
    main(parse_args(arguments(tiny_model, output, "--max_train_steps", "1")))
    before = snapshot(output)
    with pytest.raises(InputError, match="holds a finished run and no complete checkpoint"):
        main(parse_args(arguments(tiny_model, output, "--max_train_steps", "1", "--resume_from_checkpoint", "latest")))
    assert snapshot(output) == before


HOLD_THE_LOCK = """
import sys, time
sys.path.insert(0, sys.argv[1])
from pipelines.run_folder import OutputLock
OutputLock(sys.argv[2]).acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_a_lock_held_by_a_live_process_refuses_and_a_dead_ones_is_taken_over(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, ROOT, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=rf"is in use by process {holder.pid} on this host"):
            check_output_dir(str(tmp_path), overwrite=False)
        with pytest.raises(InputError, match=rf"is in use by process {holder.pid} on this host"):
            OutputLock(str(tmp_path)).acquire()
    finally:
        holder.kill()  # SIGKILL: the holder cannot clean up, its lock file stays
        holder.wait()
    assert (tmp_path / LOCK_FILE).exists()
    check_output_dir(str(tmp_path), overwrite=False)  # a lock file alone is neither content nor a lock
    lock = OutputLock(str(tmp_path))
    assert lock.acquire() == f"took over the lock of process {holder.pid} on this host, which is no longer running"
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / LOCK_FILE).exists()
    assert LOCK_FILE in upload_ignore_patterns("logs", False, False, False)


def test_a_garbage_lock_file_holds_nothing(tmp_path):
    for garbage in ('{"pid": "abc"}', "[1, 2]", '{"pid": 1e30}', "not json"):
        (tmp_path / LOCK_FILE).write_text(garbage)
        lock = OutputLock(str(tmp_path))
        lock.acquire()
        lock.release()


def test_a_run_that_finished_into_the_folder_after_parsing_is_not_overwritten(tiny_model, tmp_path):
    output = tmp_path / "raced"
    late = parse_args(arguments(tiny_model, output, "--max_train_steps", "1", "--learning_rate", "0.5"))
    main(parse_args(arguments(tiny_model, output, "--max_train_steps", "1")))  # finishes first
    before = snapshot(output)
    with pytest.raises(InputError, match="holds a finished EraseDiff run"):
        main(late)
    assert snapshot(output) == before


def test_a_second_run_into_a_folder_in_use_is_refused(tiny_model, tmp_path):
    output = tmp_path / "busy"
    first = launch(tiny_model, output, "--max_train_steps", "400")
    try:
        deadline = time.monotonic() + 120
        while not (output / ARGS_FILE).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        recorded = (output / ARGS_FILE).read_bytes()
        for extra in ([], ["--resume_from_checkpoint", "latest"]):
            with pytest.raises(SystemExit):
                parse_args(arguments(tiny_model, output, "--max_train_steps", "1", *extra))
        # Both started before either wrote anything: the lock decides.
        with pytest.raises(InputError, match=rf"is in use by process {first.pid} on this host"):
            OutputLock(str(output)).acquire()
        assert (output / ARGS_FILE).read_bytes() == recorded
    finally:
        first.kill()
        first.wait()


# A full disk --------------------------------------------------------------------------------------------


def no_space_when(fragment: str, monkeypatch):
    """safetensors' writer raises ENOSPC for files whose path contains ``fragment`` (a library call made to
    fail as a full disk would; none of ours is replaced)."""
    import safetensors.torch

    original = safetensors.torch.save_file

    def save_file(tensors, filename, *args, **kwargs):
        if fragment in str(filename):
            raise OSError(errno.ENOSPC, "No space left on device", str(filename))
        return original(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)


def test_a_full_disk_at_the_final_save_leaves_no_model_that_looks_complete(tiny_model, tmp_path, monkeypatch):
    output = tmp_path / "full"
    no_space_when(".final.partial", monkeypatch)
    argv = arguments(
        tiny_model, output, "--max_train_steps", "2", "--checkpointing_steps", "2", "--save_as", "pipeline"
    )
    with pytest.raises(TrainingError) as caught:
        main(parse_args(argv))
    message = str(caught.value)
    assert "\n" not in message and f"no space left on the device while writing {output}" in message
    assert "checkpoint-2, is intact" in message
    assert not (output / "model_index.json").exists() and not (output / "unet").exists()
    assert not (output / ".final.partial").exists()
    assert os.path.isfile(output / "checkpoint-2" / MANIFEST_FILE)


def test_a_full_disk_at_a_checkpoint_keeps_the_earlier_ones(tiny_model, tmp_path, monkeypatch):
    output = tmp_path / "full-checkpoint"
    main(parse_args(arguments(tiny_model, output, "--max_train_steps", "1", "--checkpointing_steps", "1")))
    os.remove(output / LORA_WEIGHTS_FILE)
    before = snapshot(output / "checkpoint-1")
    no_space_when(".checkpoint-2.partial", monkeypatch)
    argv = arguments(
        tiny_model,
        output,
        "--max_train_steps",
        "2",
        "--checkpointing_steps",
        "1",
        "--resume_from_checkpoint",
        "latest",
    )
    with pytest.raises(TrainingError, match=r"while writing .*checkpoint-2; the partial folder was removed"):
        main(parse_args(argv))
    assert snapshot(output / "checkpoint-1") == before
    assert [n for n in os.listdir(output) if "checkpoint" in n] == ["checkpoint-1"]


# Signals ----------------------------------------------------------------------------------------------


def start_until_checkpoint(model, output, extra=()):
    process = launch(model, output, "--max_train_steps", "300", "--checkpointing_steps", "2", *extra, piped=True)
    deadline = time.monotonic() + 120
    while not (output / "checkpoint-2").is_dir() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be signalled"
    return process


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_after_the_step_with_a_checkpoint_and_the_resume_command(signum, code, tiny_model, tmp_path):
    output = tmp_path / "signalled"
    process = start_until_checkpoint(tiny_model, output)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr[-2000:]
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"error: stopped by {signal.Signals(signum).name} after step ")
    assert "resume with: accelerate launch train_erasediff.py" in last_line
    assert last_line.endswith("--resume_from_checkpoint latest")
    stopped_at = int(last_line.split(" after step ")[1].split(";")[0])
    assert os.path.isfile(output / f"checkpoint-{stopped_at}" / MANIFEST_FILE)
    assert not (output / LOCK_FILE).exists()
    assert "***** Erasing *****" in stderr and "samples per step" in stderr  # the start summary is logged

    if signum == signal.SIGINT:  # resuming gives the uninterrupted weights
        extra = ["--max_train_steps", "300", "--checkpointing_steps", "2"]
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as in the signalled subprocess: matmuls then reduce in the same order
        try:
            main(parse_args(arguments(tiny_model, output, *extra, "--resume_from_checkpoint", "latest")))
            main(parse_args(arguments(tiny_model, tmp_path / "whole", *extra)))
        finally:
            torch.set_num_threads(threads)
        assert_same_weights(lora_weights(output), lora_weights(tmp_path / "whole"))


def test_a_second_ctrl_c_stops_at_once(tiny_model, tmp_path):
    output = tmp_path / "twice"
    # Slow steps (64 remain samples each), so that the second signal lands while the run is stopping.
    slow = ["--num_remain_images", "8", "--train_batch_size", "64", "--checkpoints_total_limit", "1"]
    process = start_until_checkpoint(tiny_model, output, slow)
    process.send_signal(signal.SIGINT)
    seen = ""
    while "stopping after the current step" not in seen:
        character = process.stderr.read(1)
        assert character, "the run ended without announcing that it stops"
        seen += character
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1].startswith("error: stopped at once by a second SIGINT")
    assert not (output / LOCK_FILE).exists()


# The console ----------------------------------------------------------------------------------------------


def test_the_run_logs_a_start_and_an_end_summary(tiny_model, tmp_path, caplog):
    caplog.set_level("INFO")
    output = tmp_path / "logged"
    main(parse_args(arguments(tiny_model, output, "--max_train_steps", "1", "--gradient_accumulation_steps", "2")))
    log = caplog.text
    assert "forget set: 4 images, 4 per process × 1 processes × 2 accumulation = 8 samples per step" in log
    assert "remain set: 4 images, 4 per process × 1 processes × 2 accumulation = 8 samples per step" in log
    assert "training: LoRA adapters (--train_method full)" in log and "precision: no" in log
    assert f"{output / LORA_WEIGHTS_FILE}: the erased model" in log
    assert "wall time:" in log and f"pipe.load_lora_weights({str(output)!r})" in log
    # Where the time went: every phase the run went through, read back as benchmarks/run_time.py reads it.
    spent = parse_phase_lines(log)
    assert all(spent[phase] > 0 for phase in ("loading", "data generation", "training", "validation images"))
    assert spent["evaluation"] == spent["publishing"] == 0  # not asked for


def run_launched(model, output, point, signal_name, *extra):
    """train_erasediff.py through the launcher that signals it at ``point``."""
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "tests", "killing_launcher.py"), *arguments(model, output, *extra)],
        env={**SUBPROCESS_ENV, "KILL_AT": point, "KILL_SIGNAL": signal_name},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_signal_during_the_final_save_finishes_the_model_and_card_then_stops_with_a_checkpoint(tiny_model, tmp_path):
    output = tmp_path / "final"
    process = run_launched(tiny_model, output, "final_save", "SIGINT", "--max_train_steps", "2")
    assert process.returncode == 130, process.stderr[-2000:]
    last_line = process.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: stopped by SIGINT after step 2; saved ") and "checkpoint-2" in last_line
    assert (output / LORA_WEIGHTS_FILE).exists() and (output / "README.md").exists()
    assert not (output / LOCK_FILE).exists() and not (output / ".final.partial").exists()
    finished = lora_weights(output)
    main(parse_args(arguments(tiny_model, output, "--max_train_steps", "2", "--resume_from_checkpoint", "latest")))
    assert_same_weights(lora_weights(output), finished)


def test_sigterm_before_training_stops_at_once_with_143_and_no_lock(tiny_model, tmp_path):
    output = tmp_path / "early"
    # The first generated image: data generation, before the first step.
    process = run_launched(tiny_model, output, "first_image", "SIGTERM")
    assert process.returncode == 143, process.stderr[-2000:]
    assert process.stderr.strip().splitlines()[-1] == (
        "error: stopped at once by SIGTERM before training started; continue with --resume_from_checkpoint latest"
    )
    assert not (output / LOCK_FILE).exists()


# Other runs' files are never deleted or taken -------------------------------------------------------


def test_overwrite_output_dir_never_deletes_files_in_the_generated_data_folder(tiny_model, tmp_path):
    output = tmp_path / "theirs"
    write_image_folder(output / "data" / "forget", ["a cat", "a dog"])
    before = snapshot(output)
    with pytest.raises(InputError, match=r"data/forget holds files that were not generated by train_erasediff.py"):
        main(parse_args(arguments(tiny_model, output, "--max_train_steps", "1", "--overwrite_output_dir")))
    assert {k: v for k, v in snapshot(output).items() if k in before} == before


def test_changed_remain_images_refuse_the_resume(tiny_model, tmp_path):
    folder = write_image_folder(tmp_path / "remain", ["a cat", "a dog"])
    output = tmp_path / "data-run"
    extra = ["--remain_data_dir", folder, "--max_train_steps", "1", "--checkpointing_steps", "1"]
    main(parse_args(arguments(tiny_model, output, *extra)))
    os.remove(output / LORA_WEIGHTS_FILE)
    write_image_folder(tmp_path / "remain", ["a cat", "a dog"], seed=1)  # same names, other pixels
    with pytest.raises(InputError, match="the remain images or their captions changed"):
        main(parse_args(arguments(tiny_model, output, *extra, "--resume_from_checkpoint", "latest")))


def test_a_checkpoint_resumed_into_another_runs_folder_is_refused(finished_run, tiny_model, tmp_path):
    other = tmp_path / "other"
    main(parse_args(arguments(tiny_model, other, "--max_train_steps", "1")))
    before = snapshot(other)
    named = str(finished_run / "checkpoint-1")
    with pytest.raises(InputError, match=r"belongs to run \w+, but --output_dir .* holds run \w+"):
        main(parse_args(arguments(tiny_model, other, "--max_train_steps", "2", "--resume_from_checkpoint", named)))
    assert snapshot(other) == before


def test_a_foreign_checkpoint_in_the_way_is_kept_under_another_name(finished_run, tiny_model, tmp_path):
    output = tmp_path / "crowded"
    extra = ["--checkpointing_steps", "1"]
    main(parse_args(arguments(tiny_model, output, *extra, "--max_train_steps", "1")))
    os.remove(output / LORA_WEIGHTS_FILE)
    foreign = finished_run / "checkpoint-2"
    shutil.copytree(foreign, output / "checkpoint-2")
    (output / "checkpoint-2" / "note.txt").write_text("someone else's")
    main(
        parse_args(
            arguments(tiny_model, output, *extra, "--max_train_steps", "2", "--resume_from_checkpoint", "latest")
        )
    )
    assert (output / "checkpoint-2.replaced" / "note.txt").read_text() == "someone else's"
    ours = json.loads((output / "checkpoint-2" / MANIFEST_FILE).read_text())["run_id"]
    assert ours == json.loads((output / ARGS_FILE).read_text())["run_id"]
    assert ours != json.loads((foreign / MANIFEST_FILE).read_text())["run_id"]


def test_a_scale_lr_run_resumes_and_records_one_learning_rate(tiny_model, tmp_path):
    output = tmp_path / "scaled"
    extra = ["--scale_lr", "--learning_rate", "1e-4", "--checkpointing_steps", "1"]
    main(parse_args(arguments(tiny_model, output, *extra, "--max_train_steps", "1")))
    os.remove(output / LORA_WEIGHTS_FILE)
    main(
        parse_args(
            arguments(tiny_model, output, *extra, "--max_train_steps", "2", "--resume_from_checkpoint", "latest")
        )
    )
    manifest = json.loads((output / "checkpoint-2" / MANIFEST_FILE).read_text())
    assert (
        manifest["arguments"]["learning_rate"] == json.loads((output / ARGS_FILE).read_text())["learning_rate"] == 1e-4
    )
    assert "1e-4 (constant), scaled to 0.0004 by --scale_lr" in (output / "README.md").read_text().replace(
        "0.0001", "1e-4"
    )


@pytest.fixture
def small_disk(tmp_path):
    """A real 8 MB tmpfs (where this machine lets the test mount one; the tests above make safetensors
    raise ENOSPC instead)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); the ENOSPC tests cover it")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def fill(disk, leave_bytes: int) -> None:
    """Fills ``disk`` up to ``leave_bytes`` of free space."""
    stats = os.statvfs(disk)
    free = stats.f_bavail * stats.f_frsize
    with open(os.path.join(disk, f"filler-{time.monotonic_ns()}"), "wb") as handle:
        handle.write(b"\0" * max(0, free - leave_bytes))


def test_a_real_full_disk_is_one_line_and_keeps_the_checkpoints(small_disk, tiny_model):
    output = small_disk / "run"
    extra = ["--checkpointing_steps", "1"]
    main(parse_args(arguments(tiny_model, output, *extra, "--max_train_steps", "1")))
    os.remove(output / LORA_WEIGHTS_FILE)  # an unfinished run with checkpoint-1
    kept = snapshot(output / "checkpoint-1")

    fill(small_disk, 8 * 1024)  # room for the validation grid, not for the final save
    resume = ["--resume_from_checkpoint", "latest"]
    with pytest.raises(TrainingError) as caught:
        main(parse_args(arguments(tiny_model, output, *extra, "--max_train_steps", "1", *resume)))
    assert str(caught.value).startswith(f"no space left on the device while writing {output}; the partial folder")
    assert "checkpoint-1, is intact" in str(caught.value) and "\n" not in str(caught.value)
    assert not (output / LORA_WEIGHTS_FILE).exists() and not (output / ".final.partial").exists()

    with pytest.raises(TrainingError, match=r"while writing .*checkpoint-2; the partial folder was removed"):
        main(parse_args(arguments(tiny_model, output, *extra, "--max_train_steps", "2", *resume)))
    assert snapshot(output / "checkpoint-1") == kept
    assert not [name for name in os.listdir(output) if name.startswith(".checkpoint-")]
    assert not (output / LOCK_FILE).exists()
