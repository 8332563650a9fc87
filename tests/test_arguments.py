"""Bad input gets one clear line naming the argument or file, before any model loads."""

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT

from pipelines.errors import InputError
from train_erasediff import main, parse_args


def usage_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "no forget data"),
        (["--concept", "x", "--concept_type", "painting"], "invalid choice: 'painting'"),
        (["--concept", "x", "--forget_target", "neggrad"], "neggrad has no minimum"),
        (["--concept", "x", "--use_lora", "--rank", "0"], "--rank must be a positive integer"),
        (["--concept", "x", "--eta", "-1"], "--eta must not be negative"),
        (["--concept", "x", "--lambda_value", "-0.5"], "--lambda_value must not be negative"),
        (["--concept", "x", "--inner_steps", "-2"], "--inner_steps must not be negative"),
        (["--concept", "x", "--train_batch_size", "0"], "--train_batch_size must be a positive integer"),
        (["--concept", "x", "--resume_from_checkpoint", "/nonexistent/checkpoint-3"], "does not exist"),
        (
            ["--concept", "x", "--forget_data_dir", "/nonexistent/folder"],
            "--forget_data_dir /nonexistent/folder is not a folder",
        ),
        (["--concept", " "], "--concept is empty"),
        (["--concept", "x", "--proportion_empty_prompts", "1"], "--proportion_empty_prompts must be in [0, 1)"),
        (["--concept", "x", "--lr_warmup_steps", "50"], "use --lr_scheduler constant_with_warmup"),
    ],
)
def test_argument_mistakes_are_one_line_usage_errors(capsys, tmp_path, argv, message):
    line = usage_error(capsys, [*argv, "--output_dir", str(tmp_path / "out")])
    assert message in line


def test_empty_prompt_file_is_refused(capsys, tmp_path):
    (tmp_path / "prompts.txt").write_text("")
    line = usage_error(
        capsys, ["--forget_prompts", str(tmp_path / "prompts.txt"), "--output_dir", str(tmp_path / "out")]
    )
    assert "prompts.txt is empty" in line


def test_output_dir_that_is_a_file_or_under_a_file_is_refused(capsys, tmp_path):
    (tmp_path / "file").write_text("mine")
    assert "is a file" in usage_error(capsys, ["--concept", "x", "--output_dir", str(tmp_path / "file")])
    assert "lies under the file" in usage_error(
        capsys, ["--concept", "x", "--output_dir", str(tmp_path / "file" / "sub")]
    )


def test_foreign_non_empty_output_dir_needs_overwrite_and_keeps_its_files(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    assert "--overwrite_output_dir" in usage_error(capsys, ["--concept", "x", "--output_dir", str(tmp_path)])
    assert parse_args(["--concept", "x", "--output_dir", str(tmp_path), "--overwrite_output_dir"]).overwrite_output_dir
    assert (tmp_path / "notes.txt").read_text() == "mine"


def run_main(model, tmp_path, *extra):
    main(
        parse_args(
            [
                "--pretrained_model_name_or_path",
                model,
                "--concept",
                "x",
                "--resolution",
                "16",
                "--output_dir",
                str(tmp_path / "out"),
                "--report_to",
                "none",
                *extra,
            ]
        )
    )


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--mixed_precision", "fp16"], "--mixed_precision fp16 needs a CUDA GPU"),
        (
            ["--enable_xformers_memory_efficient_attention"],
            "--enable_xformers_memory_efficient_attention needs a CUDA GPU",
        ),
        (["--resolution", "15"], r"--resolution 15 is not a multiple of 8 \(the VAE's downsampling factor is 2"),
    ],
)
def test_runtime_mistakes_fail_before_models_load(tiny_model, tmp_path, extra, message):
    with pytest.raises(InputError, match=message):
        run_main(tiny_model, tmp_path, *extra)
    assert not (tmp_path / "out").exists()


def test_missing_or_foreign_model_folder_is_named(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        run_main(str(tmp_path / "nowhere"), tmp_path)
    (tmp_path / "not_sd").mkdir()
    with pytest.raises(InputError, match="has no model_index.json"):
        run_main(str(tmp_path / "not_sd"), tmp_path)


def test_8bit_adam_without_bitsandbytes_is_refused(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes `import bitsandbytes` fail
    with pytest.raises(InputError, match="--use_8bit_adam needs bitsandbytes"):
        run_main(tiny_model, tmp_path, "--use_8bit_adam")


def test_empty_data_folder_is_refused_before_models_load(tiny_model, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="--remain_data_dir: .*has no metadata.jsonl"):
        run_main(tiny_model, tmp_path, "--remain_data_dir", str(tmp_path / "empty"))
    assert not (tmp_path / "out").exists()


def test_command_line_prints_one_line_and_no_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "train_erasediff.py"),
            "--concept",
            "x",
            "--output_dir",
            str(tmp_path / "out"),
            "--pretrained_model_name_or_path",
            str(tmp_path / "missing-model"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: --pretrained_model_name_or_path")


def test_lr_scheduler_choices_are_diffusers_schedulers():
    from diffusers.optimization import SchedulerType

    from pipelines.options import LR_SCHEDULERS

    assert sorted(LR_SCHEDULERS) == sorted(kind.value for kind in SchedulerType)


def test_argument_parsing_imports_neither_torch_nor_diffusers(tmp_path):
    check = (
        "import sys, train_erasediff\n"
        f"train_erasediff.parse_args(['--concept', 'x', '--output_dir', {str(tmp_path / 'out')!r}])\n"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'accelerate') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", check], check=True, cwd=ROOT, timeout=60)


def test_every_flag_shows_its_default_in_help_and_is_documented():
    from train_erasediff import DefaultsHelpFormatter, build_parser

    parser = build_parser()
    formatter = DefaultsHelpFormatter("train_erasediff.py")
    usage = open(os.path.join(ROOT, "docs", "usage.md"), encoding="utf-8").read()
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        assert "default" in formatter._get_help_string(action).lower(), action.option_strings
        # In a code span of its own or opening one (`--flag`, `--flag VALUE`).
        assert re.search("`" + re.escape(action.option_strings[0]) + "[` =]", usage), (
            f"{action.option_strings[0]} is not in docs/usage.md"
        )
