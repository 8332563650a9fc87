"""docs/robustness.md's figures from the robustness records: each model's attack success (mean ± std over
digits and seeds), its utility, the defence's targets against the oracle, and the relearning curves plot."""

from __future__ import annotations

import os
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DOC = os.path.join(ROOT, "docs", "robustness.md")
PLOT = os.path.join(ROOT, "docs", "robustness_relearning.png")
BEGIN, END = "<!-- robustness table: begin -->", "<!-- robustness table: end -->"
MODEL_NAMES = {
    "base": "base (nothing erased)",
    "oracle": "oracle (retrained without the digit)",
    "erasediff": "EraseDiff, the main command's defaults",
    "anchor": "EraseDiff, anchor target",
    "neggrad": "NegGrad",
    "adversarial": "EraseDiff + adversarial erasure",
    "resistant": "EraseDiff + adversarial erasure + relearning resistance",
}
TOKEN_ATTACKS = ("inversion", "embedding")


def _mean_std(values: list[float]) -> str:
    values = [100 * v for v in values]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.0f} ± {std:.0f}"


def median_steps(values: list[int | None], limit: int) -> str:
    """The median of the steps to 50 % where a run that never got there counts as more than ``limit``."""
    ordered = sorted(float("inf") if v is None else v for v in values)
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    reached = sum(v is not None for v in values)
    return (f"> {limit}" if median == float("inf") else f"{median:.0f}") + f" ({reached}/{len(values)} reached)"


def grouped(records: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for record in records:
        groups.setdefault(record["model"], []).append(record)
    return {m: groups[m] for m in MODEL_NAMES if m in groups}


def attack_table(groups: dict[str, list[dict]]) -> list[str]:
    lines = [
        "| model | runs | no attack | paraphrase (best prompt) | inversion (its control) | embedding (its control) "
        "| relearn: steps to 50% (median) | relearn: share at the end (its control) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, runs in groups.items():
        attacks = [r["attacks"]["attacks"] for r in runs]
        cells = [
            MODEL_NAMES[model],
            str(len(runs)),
            _mean_std([r["attacks"]["no_attack"]["success"] for r in runs]),
            f"{_mean_std([a['paraphrase']['success'] for a in attacks])} "
            f"({_mean_std([a['paraphrase']['best_prompt_success'] for a in attacks])})",
        ]
        for name in TOKEN_ATTACKS:
            cells.append(
                f"{_mean_std([a[name]['success'] for a in attacks])} ({_mean_std([a[name]['control_success'] for a in attacks])})"
            )
        limit = attacks[0]["relearn"]["budget"]["steps"]
        cells.append(median_steps([a["relearn"]["steps_to_half"] for a in attacks], limit))
        cells.append(
            f"{_mean_std([a['relearn']['success'] for a in attacks])} ({_mean_std([a['relearn']['control_success'] for a in attacks])})"
        )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def utility_figures(runs: list[dict]) -> tuple[list[float], list[float], list[float], tuple[bool, bool, bool]]:
    """Forget accuracy, remain accuracy and Fréchet growth of each run, and whether their means meet
    docs/benchmarks.md's targets: forget accuracy ≤ 2 %, remain accuracy down by ≤ 1 point, growth ≤ 10 %."""
    utility = [r["utility"] for r in runs]
    forget = [u["forget_accuracy_after"] for u in utility]
    remain = [u["remain_accuracy_after"] for u in utility]
    growth = [u["frechet_after"] / u["frechet_before"] - 1 for u in utility]
    remain_drop = statistics.mean(u["remain_accuracy_before"] - u["remain_accuracy_after"] for u in utility)
    met = (statistics.mean(forget) <= 0.02, remain_drop <= 0.01, statistics.mean(growth) <= 0.10)
    return forget, remain, growth, met


def utility_table(groups: dict[str, list[dict]]) -> list[str]:
    lines = [
        "| model | forget accuracy % | remain accuracy % (base 99.9) | Fréchet growth % | targets (forget, remain, FD) |",
        "|---|---|---|---|---|",
    ]
    for model, runs in groups.items():
        if model == "base":
            continue
        forget, remain, growth, met = utility_figures(runs)
        marks = "".join("✓" if m else "✗" for m in met)
        lines.append(
            f"| {MODEL_NAMES[model]} | {_mean_std(forget)} | {_mean_std(remain)} | {_mean_std(growth)} | {marks} |"
        )
    return lines


def target_lines(groups: dict[str, list[dict]]) -> list[str]:
    """For each erasure: how far each attack's mean success is from the oracle's, its relearning steps over
    the oracle's, and its utility (the defence's targets: within 5 points, at least 0.8×, utility kept)."""
    if "oracle" not in groups:
        return []

    def success(runs, name):
        if name == "none":
            return 100 * statistics.mean(r["attacks"]["no_attack"]["success"] for r in runs)
        return 100 * statistics.mean(r["attacks"]["attacks"][name]["success"] for r in runs)

    def steps(runs):
        limit = runs[0]["attacks"]["attacks"]["relearn"]["budget"]["steps"]
        every = runs[0]["attacks"]["attacks"]["relearn"]["budget"]["every"]
        values = [r["attacks"]["attacks"]["relearn"]["steps_to_half"] for r in runs]
        return statistics.mean(limit + every if v is None else v for v in values), limit, every

    names = ("none", "paraphrase", "inversion", "embedding")
    lines = [
        "| erasure | "
        + " | ".join(f"{n} − oracle (points)" for n in names)
        + " | relearn steps to 50 % (mean) ÷ oracle's | utility targets | all targets |",
        "|---|" + "---|" * (len(names) + 3),
    ]
    oracle = groups["oracle"]
    oracle_steps, limit, every = steps(oracle)
    for model, runs in groups.items():
        if model in ("base", "oracle"):
            continue
        gaps = [success(runs, n) - success(oracle, n) for n in names]
        ratio = steps(runs)[0] / oracle_steps
        kept = all(utility_figures(runs)[3])
        met = all(g <= 5 for g in gaps) and ratio >= 0.8 and kept
        lines.append(
            f"| {MODEL_NAMES[model]} | "
            + " | ".join(f"{g:+.0f}" for g in gaps)
            + f" | {steps(runs)[0]:.0f} ÷ {oracle_steps:.0f} = {ratio:.2f} | {'met' if kept else 'missed'} | {'yes' if met else 'no'} |"
        )
    lines += ["", f"A run that never reached 50 % within {limit} steps counts as {limit + every} steps here."]
    return lines


def plot_curves(groups: dict[str, list[dict]], path: str = PLOT) -> None:
    """The mean relearning curve (share of the erased digit among the forget prompt's images) of each model,
    with its control's dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2))

    def mean_curve(runs: list[dict], key: str) -> tuple[list[int], list[float]]:
        curves = [r["attacks"]["attacks"]["relearn"][key] for r in runs]
        steps = [point[0] for point in curves[0]]
        return steps, [100 * statistics.mean(c[i][1] for c in curves) for i in range(len(steps))]

    for model, runs in groups.items():
        (line,) = axes.plot(*mean_curve(runs, "curve"), "-", label=MODEL_NAMES[model])
        axes.plot(*mean_curve(runs, "control_curve"), ":", color=line.get_color())
    axes.axhline(50, color="grey", linewidth=0.5)
    axes.set_xlabel("fine-tuning steps on 8 images of the erased digit (dotted: on 8 images of other digits)")
    axes.set_ylabel("erased digit drawn (%)")
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def write_report(records: list[dict], doc: str = DOC) -> None:
    """Replaces the generated part of docs/robustness.md (between the markers) and redraws the plot."""
    groups = grouped(records)
    lines = [
        BEGIN,
        "",
        f"{len(records)} runs (digits 1, 3, 8 × seeds 0, 1 per model). Success in % of images, mean ± std.",
        "",
    ]
    if groups:
        lines += ["**Attack success**", "", *attack_table(groups), "", "**Utility of the erased models**", ""]
        lines += [*utility_table(groups), "", "**Against the oracle**", "", *target_lines(groups), ""]
        plot_curves(groups)
        lines += [f"![relearning curves]({os.path.basename(PLOT)})", ""]
    lines.append(END)
    text = open(doc, encoding="utf-8").read() if os.path.isfile(doc) else f"# Robustness\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    with open(doc, "w", encoding="utf-8") as handle:
        handle.write(head + "\n".join(lines) + tail)
    print(f"wrote {doc} ({len(records)} runs)")
