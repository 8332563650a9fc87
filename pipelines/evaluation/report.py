"""The written results of an evaluation: metrics.json, and metrics.md with a markdown table (what each
number is, base next to erased, and which way a working erasure moves it), NudeNet's per-label counts and
the image grids, ready to paste into a model card."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

METRICS_FILE = "metrics.json"
MARKDOWN_FILE = "metrics.md"
_NONE = "—"


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def _number(value: float) -> str:
    return f"{value:.4g}"


def table_rows(metrics: dict) -> list[tuple[str, str, str, str, str]]:
    """(metric, prompts, base, erased, what a working erasure shows) for each measured number."""
    rows = []
    if "nudenet" in metrics:
        result, threshold = metrics["nudenet"], metrics["nudenet"]["threshold"]
        for prompt_set, goal in (("forget", "erased ≪ base"), ("remain", "erased ≤ base")):
            base, erased = result[prompt_set]["base"], result[prompt_set]["erased"]
            rows.append(
                (
                    f"NudeNet exposed-part detections (score ≥ {threshold})",
                    f"{prompt_set} ({base['images']} images)",
                    str(base["exposed_detections"]),
                    str(erased["exposed_detections"]),
                    goal,
                )
            )
            rows.append(
                (
                    "NudeNet images with an exposed part",
                    prompt_set,
                    _percent(base["images_with_exposed"] / base["images"]),
                    _percent(erased["images_with_exposed"] / erased["images"]),
                    goal,
                )
            )
    if "clip_score" in metrics:
        for prompt_set, goal in (("forget", "erased < base"), ("remain", "erased ≈ base")):
            values = metrics["clip_score"][prompt_set]
            rows.append(("CLIP score", prompt_set, _number(values["base"]), _number(values["erased"]), goal))
    if "clip_accuracy" in metrics:
        result = metrics["clip_accuracy"]
        rows.append(
            (
                f"CLIP zero-shot accuracy of the concept (chance {_percent(result['chance'])})",
                "forget",
                _percent(result["forget"]["base"]),
                _percent(result["forget"]["erased"]),
                "erased ≪ base, near chance",
            )
        )
    if "classifier" in metrics:
        result = metrics["classifier"]
        labels = ", ".join(result["forget_labels"])
        rows.append(
            (
                f"classifier accuracy on the forget class ({labels})",
                "forget",
                _percent(result["forget"]["base"]),
                _percent(result["forget"]["erased"]),
                "erased ≪ base",
            )
        )
        rows.append(
            (
                "classifier: same top-1 class as the base image",
                "remain",
                _NONE,
                _percent(result["remain"]["agreement"]),
                "near 100%",
            )
        )
    for name, label in (("fd_clip", "FD on CLIP features"), ("fid", "Inception FID")):
        if name not in metrics:
            continue
        for prompt_set, goal in (("forget", "large"), ("remain", "near 0")):
            values = metrics[name].get(prompt_set)
            if values is None:
                continue
            rows.append((f"{label}, base ↔ erased", prompt_set, _NONE, _number(values["base_vs_erased"]), goal))
            if "reference_vs_base" in values:
                rows.append(
                    (
                        f"{label} to the reference images",
                        prompt_set,
                        _number(values["reference_vs_base"]),
                        _number(values["reference_vs_erased"]),
                        "erased ≈ base",
                    )
                )
    return rows


def markdown_table(metrics: dict) -> str:
    lines = ["| metric | prompts | base | erased | a working erasure shows |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(metrics)]
    return "\n".join(lines)


def render_markdown(
    results: dict, grid_files: dict[str, str], heading: str = "# Erasure evaluation", evaluation_dir: str = "."
) -> str:
    """metrics.md: the setting in one paragraph, the table, NudeNet's counts per label and the grids
    (``grid_files`` maps each prompt set to the grid's path relative to where the markdown will live)."""
    settings, metrics = results["settings"], results["metrics"]
    prompts = results["prompts"]
    lines = [
        heading,
        "",
        f"Base model `{results['models']['base']}`, erased model `{results['models']['erased']}`. "
        f"{len(prompts['forget'])} forget and {len(prompts['remain'])} remain prompts, {settings['num_images']} "
        f"images per prompt and model, each drawn from the same seed for both models "
        f"({settings['num_inference_steps']} steps, guidance {settings['guidance_scale']}, seed {settings['seed']}). "
        "docs/evaluation.md explains each metric.",
        "",
        markdown_table(metrics),
    ]
    if "nudenet" in metrics:
        result = metrics["nudenet"]
        lines += [
            "",
            f"NudeNet detections per exposed-body-part label (score ≥ {result['threshold']}):",
            "",
            "| label | forget, base | forget, erased | remain, base | remain, erased |",
            "|---|---|---|---|---|",
        ]
        for label in result["forget"]["base"]["detections"]:
            counts = [result[s][m]["detections"][label] for s in ("forget", "remain") for m in ("base", "erased")]
            lines.append(f"| {label} | " + " | ".join(str(c) for c in counts) + " |")
    if grid_files:
        lines += ["", "Each row is one prompt: base model on the left, erased model on the right, same seeds."]
        for prompt_set, path in grid_files.items():
            lines += ["", f"![{prompt_set} prompts, base | erased]({path.replace(os.sep, '/')})"]
    level = len(heading.split()[0]) + 1
    if results.get("attacks"):
        from .attacks.report import attack_markdown

        lines += ["", attack_markdown(results["attacks"], "#" * level + " Attacks", evaluation_dir).rstrip()]
    else:
        lines += [
            "",
            "#" * level + " Attacks",
            "",
            "No attack was run: nothing here shows whether the concept comes back under a rephrased prompt, a "
            "learned word or fine-tuning (`--attacks all`, or `--evaluation_attacks all` in training; docs/robustness.md).",
        ]
    return "\n".join(lines) + "\n"


@dataclass
class EvaluationReport:
    """What an evaluation wrote. ``results`` is metrics.json's content; ``table`` the markdown table alone;
    ``markdown`` metrics.md (setting, table, per-label counts, grids linked relative to ``output_dir``);
    ``grid_paths`` maps each prompt set to its grid PNG."""

    results: dict
    table: str
    markdown: str
    output_dir: str
    metrics_path: str
    markdown_path: str
    grid_paths: dict[str, str]

    def markdown_relative_to(self, folder: str, heading: str = "# Erasure evaluation") -> str:
        """metrics.md's text with the grids linked relative to ``folder`` (e.g. a model card's folder)."""
        grids = {s: os.path.relpath(p, folder) for s, p in self.grid_paths.items()}
        return render_markdown(self.results, grids, heading, os.path.relpath(self.output_dir, folder))


def with_attacks(report: EvaluationReport, attacks: dict) -> EvaluationReport:
    """The report with the attack suite's results added, metrics.json and metrics.md rewritten (the metrics
    are written first, so an attack that fails loses nothing measured before it)."""
    return write_report({**report.results, "attacks": attacks}, report.grid_paths, report.output_dir)


def write_report(results: dict, grid_paths: dict[str, str], output_dir: str) -> EvaluationReport:
    """Writes metrics.json and metrics.md to ``output_dir``."""
    os.makedirs(output_dir, exist_ok=True)
    metrics_path = os.path.join(output_dir, METRICS_FILE)
    with open(metrics_path, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
    markdown = render_markdown(results, {s: os.path.relpath(p, output_dir) for s, p in grid_paths.items()})
    markdown_path = os.path.join(output_dir, MARKDOWN_FILE)
    with open(markdown_path, "w", encoding="utf-8") as handle:
        handle.write(markdown)
    return EvaluationReport(
        results=results,
        table=markdown_table(results["metrics"]),
        markdown=markdown,
        output_dir=output_dir,
        metrics_path=metrics_path,
        markdown_path=markdown_path,
        grid_paths=dict(grid_paths),
    )
