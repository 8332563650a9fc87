"""What a run prints: logging set up as diffusers' examples do it, and the start and end summaries."""

from __future__ import annotations

import logging
from dataclasses import dataclass


def configure_logging(is_local_main_process: bool) -> None:
    """INFO on the main process and ERROR elsewhere, with diffusers' and transformers' verbosity to match."""
    import diffusers
    import transformers

    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S", level=logging.INFO
    )
    if is_local_main_process:
        transformers.utils.logging.set_verbosity_warning()
        diffusers.utils.logging.set_verbosity_warning()
    else:
        transformers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.set_verbosity_error()
        logging.getLogger().setLevel(logging.ERROR)


@dataclass(frozen=True)
class SetSummary:
    """One data set's size and how many of its samples each optimizer step takes."""

    name: str
    images: int
    per_process: int

    def line(self, processes: int, accumulation: int) -> str:
        total = self.per_process * processes * accumulation
        return (
            f"{self.name}: {self.images} images, {self.per_process} per process × {processes} processes × "
            f"{accumulation} accumulation = {total} samples per step"
        )


def start_summary(
    sets: list[SetSummary],
    processes: int,
    accumulation: int,
    steps: int,
    first_step: int,
    trained: str,
    trainable_parameters: int,
    precision: str,
    output_dir: str,
) -> str:
    """The lines printed before the first step."""
    resumed = f" (resuming at step {first_step})" if first_step else ""
    return "\n".join(
        [
            "***** Erasing *****",
            *(f"  {s.line(processes, accumulation)}" for s in sets),
            f"  steps: {steps}{resumed}",
            f"  training: {trained}, {trainable_parameters:,} parameters",
            f"  precision: {precision}",
            f"  output folder: {output_dir}",
        ]
    )


def end_summary(written: list[tuple[str, str]], phase_seconds: dict[str, float], load_snippet: str) -> str:
    """The lines printed when the run has finished: each file or folder written and what it is, the wall
    time and where it went (pipelines/phases.py), and how to load the result."""
    from .phases import phase_lines

    lines = [
        "***** Done *****",
        *(f"  {path}: {what}" for path, what in written),
        f"  wall time: {sum(phase_seconds.values()):.0f} s",
        *(f"    {line}" for line in phase_lines(phase_seconds)),
    ]
    return "\n".join([*lines, "  load it with:", *(f"    {line}" for line in load_snippet.splitlines())])
