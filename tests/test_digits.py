"""Erasure works on a real (tiny) text-to-image model: the committed digits model loses the erased digit
and keeps the others, with the main command's defaults and generated remain data (a reduced version of
benchmarks/digits/run_benchmark.py; docs/benchmarks.md)."""

from __future__ import annotations

import os

import pytest

from benchmarks.digits.train_base import DEFAULT_MODEL_DIR

ERASED_DIGIT = 3
IMAGES_PER_CLASS = 20
REDUCED_RUN = {  # the main command's suite (erase.MAIN_COMMAND_FLAGS, D_r generated) with fewer generated images
    "--num_forget_images": "16",
    "--num_remain_images": "32",
    "--num_validation_images": "1",
}


@pytest.fixture(scope="module")
def digits_erasure(tmp_path_factory):
    """Judge scores of the committed digits model before and after erasing ERASED_DIGIT."""
    import torch

    from benchmarks.digits.erase import erased_pipeline, erasure_arguments, run_erasure
    from benchmarks.digits.judge import Judge
    from benchmarks.digits.measure import load_pipeline, measure

    torch.set_num_threads(1)
    if not os.path.isfile(os.path.join(DEFAULT_MODEL_DIR, "model_index.json")):
        pytest.fail(f"{DEFAULT_MODEL_DIR} holds no model: run benchmarks/digits/train_base.py")
    judge = Judge.load()
    before = measure(load_pipeline(DEFAULT_MODEL_DIR), judge, IMAGES_PER_CLASS)
    output_dir = str(tmp_path_factory.mktemp("erase-digit") / "run")
    run_erasure(erasure_arguments(DEFAULT_MODEL_DIR, ERASED_DIGIT, output_dir, 0, REDUCED_RUN))
    after = measure(erased_pipeline(DEFAULT_MODEL_DIR, output_dir), judge, IMAGES_PER_CLASS)
    return before, after


def test_the_base_model_draws_the_digit_it_is_asked_for(digits_erasure):
    before, _ = digits_erasure
    assert before.forget_accuracy(ERASED_DIGIT) >= 0.8
    assert before.remain_accuracy(ERASED_DIGIT) >= 0.8


def test_erasure_makes_the_forgotten_digit_unrecognisable(digits_erasure):
    before, after = digits_erasure
    assert after.forget_accuracy(ERASED_DIGIT) <= 0.1 < before.forget_accuracy(ERASED_DIGIT)


def test_erasure_keeps_the_remaining_digits(digits_erasure):
    before, after = digits_erasure
    assert after.remain_accuracy(ERASED_DIGIT) >= before.remain_accuracy(ERASED_DIGIT) - 0.05
