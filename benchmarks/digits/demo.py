#!/usr/bin/env python
"""The offline CPU demo: erase one digit from the digits model with train_erasediff.py and show it worked.

    python benchmarks/digits/demo.py --digit 3

Loads the committed digits model (benchmarks/digits/model; trains it with train_base.py first if it is
missing), measures it with the judge, erases the digit with train_erasediff.py as the main command runs it
(MAIN_COMMAND_FLAGS in erase.py; D_r generated from the other digits' prompts, or with --real_remain their
real training images, written to <output_dir>/real-remain-<digit>),
measures the erased model from the same seeds, prints the before/after accuracies of the forgotten and the
remaining digits, and writes a before/after grid (<output_dir>/before_after.png: one row per digit, the
base model's images on the left, the erased model's from the same seeds on the right).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from benchmarks.digits.data import DIGIT_WORDS  # noqa: E402
from benchmarks.digits.train_base import DEFAULT_MODEL_DIR  # noqa: E402

GRID_FILE = "before_after.png"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Erase one digit from the digits model and measure it.")
    parser.add_argument("--digit", type=int, default=3, choices=range(10), help="The digit to erase.")
    parser.add_argument(
        "--output_dir", default="digits-demo", help="Remain images, the erased model (erased/) and the grid."
    )
    parser.add_argument("--model_dir", default=DEFAULT_MODEL_DIR, help="The digits base model.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the erasure run.")
    parser.add_argument("--images_per_class", type=int, default=50, help="Images per digit for the measurements.")
    parser.add_argument("--grid_images", type=int, default=6, help="Images per digit and model in the grid.")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads.")
    parser.add_argument(
        "--real_remain", action="store_true", help="Use the other digits' real training images as the remain set."
    )
    return parser


def write_grid(before: dict, after: dict, count: int, path: str) -> None:
    """One row per digit: ``count`` images before, a gap, the same seeds after; upscaled ×4."""
    import numpy as np
    from PIL import Image

    rows = []
    for digit in range(10):
        gap = np.full((16, 4, 3), 128, np.uint8)
        rows.append(np.concatenate([*before[digit][:count], gap, *after[digit][:count]], axis=1))
    grid = np.concatenate(rows, axis=0)
    Image.fromarray(grid).resize((grid.shape[1] * 4, grid.shape[0] * 4), Image.NEAREST).save(path)


def main(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    started = time.time()
    if not os.path.isfile(os.path.join(args.model_dir, "model_index.json")):
        from benchmarks.digits import train_base

        print(f"{args.model_dir} has no model: training it (about 10 minutes)", flush=True)
        train_base.main(train_base.build_parser().parse_args(["--output_dir", args.model_dir]))
    from benchmarks.digits.erase import erased_pipeline, erasure_arguments, remain_data_folder, run_erasure
    from benchmarks.digits.judge import Judge
    from benchmarks.digits.measure import generate, load_pipeline, score_images

    judge = Judge.load()
    images_before = generate(load_pipeline(args.model_dir), range(10), args.images_per_class)
    before = score_images(judge, images_before, forgotten=[args.digit])

    if os.path.isdir(args.output_dir):  # a demo starts over
        shutil.rmtree(args.output_dir)
    remain_dir = remain_data_folder(args.digit, args.output_dir) if args.real_remain else None
    erased_dir = os.path.join(args.output_dir, "erased")
    erase_seconds = run_erasure(erasure_arguments(args.model_dir, args.digit, erased_dir, args.seed, None, remain_dir))
    images_after = generate(erased_pipeline(args.model_dir, erased_dir), range(10), args.images_per_class)
    after = score_images(judge, images_after, forgotten=[args.digit])

    d = args.digit
    print(f"\nErased the digit {d} ({DIGIT_WORDS[d]}) with train_erasediff.py in {erase_seconds:.0f} s.")
    print(f"Judge accuracy on {args.images_per_class} generated images per digit (same seeds before and after):")
    print(f"  forgotten digit {d}:       {before.forget_accuracy(d):6.1%} -> {after.forget_accuracy(d):6.1%}")
    print(f"  remaining digits (mean): {before.remain_accuracy(d):6.1%} -> {after.remain_accuracy(d):6.1%}")
    print(
        f"  Fréchet distance, remaining digits vs real: {before.frechet_by_forgotten[d]:.2f} -> {after.frechet_by_forgotten[d]:.2f}"
    )
    print("  per digit: " + "  ".join(f"{k}: {before.accuracy[k]:.0%}->{after.accuracy[k]:.0%}" for k in range(10)))
    grid_path = os.path.join(args.output_dir, GRID_FILE)
    write_grid(images_before, images_after, args.grid_images, grid_path)
    print(f"Before/after grid (rows: digits 0-9; left: before, right: after): {grid_path}")
    print(f"Total time: {time.time() - started:.0f} s")
    return {"before": before, "after": after, "erase_seconds": erase_seconds}


if __name__ == "__main__":
    main(build_parser().parse_args())
