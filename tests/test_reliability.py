"""Interruption, non-finite losses and safe loading."""

import os
import re

import pytest
from conftest import ROOT, tiny_run_args

from pipelines.checkpoints import list_checkpoints, newest_complete_checkpoint
from pipelines.errors import TrainingError
from train_erasediff import main, parse_args


def arguments(model, output_dir, *extra):
    return tiny_run_args(
        model, output_dir, "--seed", "3", "--concept", "van gogh", "--use_lora", "--learning_rate", "1e-3", *extra
    )


def test_checkpoint_listing_ignores_partial_writes_and_other_names(tmp_path):
    for name in ("checkpoint-2", "checkpoint-10", ".checkpoint-12.partial", "checkpoint-x", "logs"):
        (tmp_path / name).mkdir()
    assert [step for step, _ in list_checkpoints(str(tmp_path))] == [2, 10]
    # Neither folder holds a manifest, so neither is complete.
    path, skipped = newest_complete_checkpoint(str(tmp_path), None)
    assert path is None and [p for p, _ in skipped] == [
        str(tmp_path / "checkpoint-10"),
        str(tmp_path / "checkpoint-2"),
    ]
    assert newest_complete_checkpoint(str(tmp_path / "missing"), None) == (None, [])


def test_non_finite_loss_stops_with_the_last_good_checkpoint_intact(tiny_model, tmp_path):
    output = tmp_path / "diverge"
    # Adam moves every weight by about the learning rate: 1e8 blows the UNet up after the first step.
    diverging = arguments(
        tiny_model, output, "--max_train_steps", "4", "--checkpointing_steps", "1", "--learning_rate", "1e8"
    )
    with pytest.raises(
        TrainingError, match=r"non-finite loss at step (\d+) .*the last good checkpoint is .*checkpoint-"
    ) as caught:
        main(parse_args(diverging))
    failed_at = int(str(caught.value).split("at step ")[1].split()[0])
    assert failed_at >= 2
    assert [step for step, _ in list_checkpoints(str(output))] == [failed_at - 1]
    assert not (output / "pytorch_lora_weights.safetensors").exists()


def test_code_never_unpickles_untrusted_files_or_runs_remote_code():
    sources = [os.path.join(ROOT, "train_erasediff.py")] + [
        os.path.join(folder, name)
        for folder, _, names in os.walk(os.path.join(ROOT, "pipelines"))
        for name in names
        if name.endswith(".py")
    ]
    for path in sources:
        text = open(path, encoding="utf-8").read()
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{path}: {call}"
        assert "trust_remote_code=True" not in text, path
        assert not re.search(r"^\s*import pickle|pickle\.load", text, re.M), path
