"""The attack table: for each attack, the concept's share in what it draws, its control's, and the
difference; for relearning, the steps to 50 %. It goes into metrics.md and the model card."""

from __future__ import annotations

import os

_DESCRIPTIONS = {
    "paraphrase": "the concept in other words",
    "inversion": "a word learned on concept images (concept inversion)",
    "embedding": "prompt tokens steered to the original model (UnlearnDiffAtk-style)",
    "relearn": "fine-tuning on concept images",
}


def _percent(value: float) -> str:
    return f"{100 * value:.0f}%"


def _budget(budget: dict) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in budget.items())


def _steps(value: int | None, limit: int) -> str:
    return f"> {limit}" if value is None else str(value)


def attack_rows(results: dict) -> list[tuple[str, str, str, str, str]]:
    """(attack, budget, success, control, beyond control) for the table."""
    plain = results["no_attack"]
    rows = [
        (
            "none: the forget prompts",
            "",
            _percent(plain["success"]),
            f"base model: {_percent(plain['base_success'])}",
            "",
        )
    ]
    for name, result in results["attacks"].items():
        label = f"{name}: {_DESCRIPTIONS[name]}"
        if name == "paraphrase":
            best = f"best prompt {_percent(result['best_prompt_success'])} ({result['best_prompt']!r})"
            rows.append((label, _budget(result["budget"]), f"{_percent(result['success'])}; {best}", "", ""))
            continue
        beyond = f"{100 * result['beyond_control']:+.0f} points"
        if name == "relearn":
            limit = result["budget"]["steps"]
            success = (
                f"{_percent(result['success'])} at the end; 50% after {_steps(result['steps_to_half'], limit)} steps"
            )
            control = f"{_percent(result['control_success'])}; 50% after {_steps(result['control_steps_to_half'], limit)} steps"
        else:
            success, control = _percent(result["success"]), _percent(result["control_success"])
        rows.append((label, _budget(result["budget"]), success, control, beyond))
    return rows


def attack_table(results: dict) -> str:
    """The markdown table, with a line that says which detector counted and which attacks were not run."""
    lines = [
        "| attack | budget | concept shown (erased model) | same-budget control | beyond the control |",
        "|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in attack_rows(results)]
    lines += ["", f"Counted by {results['detector']}; seed {results['seed']}."]
    not_run = results["not_run"]
    if not_run:
        lines.append(f"Not run: {', '.join(not_run)} (docs/robustness.md says what each would measure).")
    return "\n".join(lines)


def attack_markdown(results: dict, heading: str = "## Attacks", evaluation_dir: str = ".") -> str:
    """The attack section: heading, one paragraph on reading it, the table, and the grids (linked from
    ``evaluation_dir``, the evaluation's folder relative to where the markdown lives)."""
    lines = [
        heading,
        "",
        "Each attack tries to make the erased model draw the concept again. An optimising attack counts only by "
        "what it gets beyond its control: the same optimisation, budget and seeds on images of something else.",
        "",
        attack_table(results),
    ]
    grids = results.get("grids", {})
    if grids:
        lines += ["", "Each row is one prompt: the attack's images, then its control's (same seeds)."]
        for attack, path in grids.items():
            link = os.path.normpath(os.path.join(evaluation_dir, path)).replace(os.sep, "/")
            lines += ["", f"![{attack}: attack | control]({link})"]
    return "\n".join(lines) + "\n"
