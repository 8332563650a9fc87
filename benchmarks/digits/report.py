"""docs/benchmarks.md and its trade-off plot, written from the benchmark's results file."""

from __future__ import annotations

import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
REPORT_FILE = os.path.join(ROOT, "docs", "benchmarks.md")
PLOT_FILE = os.path.join(ROOT, "docs", "digits_tradeoff.png")
TUNING_FILE = os.path.join(HERE, "tuning.jsonl")  # hand-run settings search (erase.py's functions + overrides)
TARGETS = {"forget_accuracy_after": 0.02, "remain_drop": 0.01, "frechet_growth": 0.10}


def _read_json(name: str) -> dict | None:
    path = os.path.join(HERE, name)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _mean_std(values, scale: float = 1.0, digits: int = 1) -> str:
    values = np.asarray(values, dtype=float) * scale
    if len(values) == 0:
        return "–"
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.{digits}f} ± {std:.{digits}f}"


def frechet_growth(record: dict) -> float:
    """How much a run grew the remaining digits' Fréchet distance, as a fraction of the base model's."""
    return record["frechet_after"] / record["frechet_before"] - 1


def summarize(runs: list[dict]) -> dict:
    """Means and standard deviations (over runs: digits × seeds) of one group of runs."""
    growth = [frechet_growth(r) for r in runs]
    remain_drop = [r["remain_accuracy_before"] - r["remain_accuracy_after"] for r in runs]
    return {
        "runs": len(runs),
        "forget": f"{_mean_std([r['forget_accuracy_before'] for r in runs], 100)} → {_mean_std([r['forget_accuracy_after'] for r in runs], 100)}",
        "forget_rejected": _mean_std([r["forget_rejected_after"] for r in runs], 100),
        "remain": f"{_mean_std([r['remain_accuracy_before'] for r in runs], 100)} → {_mean_std([r['remain_accuracy_after'] for r in runs], 100)}",
        "frechet": f"{_mean_std([r['frechet_before'] for r in runs], 1, 2)} → {_mean_std([r['frechet_after'] for r in runs], 1, 2)}",
        "frechet_growth": _mean_std(growth, 100),
        "seconds": _mean_std([r["erase_seconds"] for r in runs], 1, 0),
        "meets": {
            "forget": float(np.mean([r["forget_accuracy_after"] for r in runs])) <= TARGETS["forget_accuracy_after"],
            "remain": float(np.mean(remain_drop)) <= TARGETS["remain_drop"],
            "frechet": float(np.mean(growth)) <= TARGETS["frechet_growth"],
        },
    }


def _row(name: str, summary: dict, description: str = "") -> str:
    marks = "".join("✓" if ok else "✗" for ok in summary["meets"].values())
    return (
        f"| {name} | {description} | {summary['runs']} | {summary['forget']} | {summary['forget_rejected']} | "
        f"{summary['remain']} | {summary['frechet']} | {summary['frechet_growth']} | {summary['seconds']} | {marks} |"
    )


_HEADER = (
    "| run | what | runs | forget acc. % before → after | forget rejected % after | remain acc. % before → after "
    "| Fréchet before → after | Fréchet growth % | erase s | targets (forget, remain, FD) |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def write_plot(groups: dict[str, list[dict]], path: str = PLOT_FILE) -> None:
    """Forget accuracy after erasure against two measures of utility, one point per variant (mean ± std
    over its runs): remain accuracy after (left) and Fréchet growth of the remaining digits (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (accuracy_axis, frechet_axis) = plt.subplots(1, 2, figsize=(11, 4.6))
    for name, runs in groups.items():
        forget = np.array([r["forget_accuracy_after"] for r in runs]) * 100
        remain = np.array([r["remain_accuracy_after"] for r in runs]) * 100
        growth = np.array([frechet_growth(r) for r in runs]) * 100
        spread = (lambda values: values.std(ddof=1)) if len(runs) > 1 else (lambda values: 0.0)
        for axis, utility in ((accuracy_axis, remain), (frechet_axis, growth)):
            axis.errorbar(
                forget.mean(),
                utility.mean(),
                xerr=spread(forget),
                yerr=spread(utility),
                fmt="o",
                capsize=3,
                label=f"{name} ({len(runs)})",
            )
    base_remain = np.mean([r["remain_accuracy_before"] for runs in groups.values() for r in runs]) * 100
    accuracy_axis.axhline(base_remain, color="grey", linestyle=":", label="base model")
    frechet_axis.axhline(TARGETS["frechet_growth"] * 100, color="red", linestyle="--", label="target (≤ 10%)")
    frechet_axis.set_yscale("symlog", linthresh=10)
    for axis in (accuracy_axis, frechet_axis):
        axis.axvline(TARGETS["forget_accuracy_after"] * 100, color="red", linestyle=":", label="target (forget ≤ 2%)")
        axis.set_xlabel("forget accuracy after erasure (%) — lower is better")
    accuracy_axis.set_ylabel("remain accuracy after erasure (%) — higher is better")
    frechet_axis.set_ylabel("Fréchet growth, remaining digits (%) — lower is better")
    accuracy_axis.legend(fontsize=7, loc="lower right")
    figure.suptitle("Digits: forgetting vs utility (compare digits × seeds)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _flags_text(flags: dict) -> str:
    return " ".join(k if v is None else f"{k} {v}" for k, v in flags.items())


def _testbed(training: dict | None, judge: dict | None) -> list[str]:
    from benchmarks.digits.erase import MAIN_COMMAND_FLAGS

    lines = [
        "## The testbed",
        "",
        "- **Base model** (`benchmarks/digits/train_base.py`, weights in `benchmarks/digits/model/`): a",
        "  `StableDiffusionPipeline` (AutoencoderKL, CLIP text encoder with a 13-word vocabulary, UNet2DConditionModel,",
        "  DDIM) trained on scikit-learn's 8×8 digits (`load_digits`, 70% training split) upsampled to 16×16, with",
        '  prompts "a handwritten digit zero" … "nine" (10% dropped to "" for classifier-free guidance).',
    ]
    if training:
        lines.append(
            f"  {training['unet_parameters']:,} UNet, {training['vae_parameters']:,} VAE and "
            f"{training['text_encoder_parameters']:,} text-encoder parameters; trained in {training['seconds']:.0f} s "
            f"on {training['threads']} CPU thread (seed {training['seed']}, {training['vae_steps']} VAE and "
            f"{training['unet_steps']} UNet steps)."
        )
    lines += [
        "- **Judge** (`benchmarks/digits/judge.py`, `judge.npz`): an MLP (64 hidden ReLU units) on the 8×8 view of an",
        '  image, with an eleventh class "not a digit" trained on synthetic garbage, and a confidence threshold.',
        "  An image counts as digit d only if d is the top class and its probability reaches the threshold.",
    ]
    if judge:
        lines.append(
            f"  The threshold, {judge['threshold']:.3f}, is the 2nd percentile of the top probability on "
            f"{judge['calibration_images']} held-out real digits (so 98% of real digits are accepted). On the other "
            f"{judge['test_images']} held-out digits: accuracy {judge['test_accuracy_without_reject']:.1%} without "
            f"the reject option, {judge['test_confident_accuracy']:.1%} confidently correct, "
            f"{judge['test_reject_fraction']:.1%} rejected; fresh synthetic garbage is rejected "
            f"{judge['fresh_garbage_reject_fraction']:.0%} of the time."
        )
    lines += [
        "- **Metrics** (`benchmarks/digits/measure.py`), always from the same seeds before and after: per class, the",
        "  fraction of images generated for that class's prompt that the judge confidently labels as that class",
        "  (accuracy) and the fraction it rejects; and the Fréchet distance (`pipelines/evaluation/frechet.py`) between judge",
        "  features of generated images of the nine remaining classes and held-out real images of those classes.",
        "  Images: DDIM, 20 steps, guidance 3.0, 50 per class.",
        "- **Erasure**: `train_erasediff.py` itself (`benchmarks/digits/erase.py`), as the main command runs it:",
        "  every setting that decides what the erasure learns is the script's default (`pipelines/options.py`:",
        "  the objective, λ rule, η and how often λ is computed, steps, image counts, batch sizes, empty-prompt share,",
        "  the sampler and D_r's guidance). Only what the model's size dictates is set:",
        f"  `{_flags_text(MAIN_COMMAND_FLAGS)}` (10 DPM-Solver++ steps draw these 16-px digits as well as",
        "  DDIM's 20 do; `--report_to` only chooses where logs go). D_f: 64 images generated by the base model from the digit's prompt. D_r: 64 images",
        "  generated from the other nine digits' prompts (`--remain_prompts`, since the built-in remain sets are for",
        "  Stable Diffusion concept types), or, in the real-D_r suite, the real training images of the other nine",
        "  digits (about 1,130) as `--remain_data_dir`, as in the paper's DDPM experiments.",
        "- **Records** (`benchmarks/digits/results.jsonl`) carry every resolved argument of their run and a hash of",
        "  them, so a changed default can never reuse an old record.",
        "",
    ]
    return lines


def _base_table(base: dict) -> list[str]:
    return [
        "## Base model: judge accuracy on generated digits",
        "",
        "| digit | " + " | ".join(str(d) for d in range(10)) + " | mean |",
        "|---|" + "---|" * 11,
        "| accuracy % | "
        + " | ".join(f"{100 * a:.0f}" for a in base["accuracy"])
        + f" | {100 * np.mean(base['accuracy']):.1f} |",
        "| rejected % | "
        + " | ".join(f"{100 * a:.0f}" for a in base["rejected"])
        + f" | {100 * np.mean(base['rejected']):.1f} |",
        "",
    ]


def _main_table(runs: list[dict], description: str, name: str = "default") -> list[str]:
    lines = [_HEADER]
    if runs:
        lines.append(_row(f"{name}, all digits", summarize(runs), description))
        lines += ["", "Per digit (mean ± std over seeds):", "", _HEADER]
        for digit in range(10):
            digit_runs = [r for r in runs if r["digit"] == digit]
            if digit_runs:
                lines.append(_row(f"digit {digit}", summarize(digit_runs)))
    return lines + [""]


def _verdict(runs: list[dict]) -> list[str]:
    """One paragraph that states which targets the default runs meet, with the figures."""
    if not runs:
        return []
    growth = 100 * np.array([frechet_growth(r) for r in runs])
    meets = summarize(runs)["meets"]
    worst = max(range(10), key=lambda d: np.mean([g for g, r in zip(growth, runs) if r["digit"] == d] or [-np.inf]))
    return [
        f"Over {len(runs)} runs: the forget target is {'met' if meets['forget'] else 'not met'}, the remain target "
        f"{'met' if meets['remain'] else 'not met'}, and the Fréchet target {'met' if meets['frechet'] else 'not met'} "
        f"(mean growth {growth.mean():+.1f}%, median {np.median(growth):+.1f}%, {int((growth <= 10).sum())} of "
        f"{len(runs)} runs at or under +10%; the worst digit is {worst}).",
        "",
    ]


def _tuning_table(records: list[dict]) -> list[str]:
    lines = [
        "| change to the first setting | digit | seed | forget acc. % | remain acc. % | Fréchet before → after | growth % | erase s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        growth = 100 * frechet_growth(r)
        lines.append(
            f"| {r['change']} | {r['digit']} | {r['seed']} | {100 * r['forget_accuracy_after']:.0f} | "
            f"{100 * r['remain_accuracy_after']:.1f} | {r['frechet_before']:.2f} → {r['frechet_after']:.2f} | "
            f"{growth:+.0f} | {r['erase_seconds']} |"
        )
    return lines + [""]


def _search_table(records: list[dict]) -> list[str]:
    """One row per hand-run search record (benchmarks/digits/search.jsonl)."""
    lines = [
        "| setting (changed from the first defaults) | digit | seed | forget acc. % | remain acc. % | Fréchet growth % | erase s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(records, key=lambda r: (r["setting"], r["digit"], r["seed"])):
        growth = 100 * frechet_growth(r)
        lines.append(
            f"| {r['setting']} | {r['digit']} | {r['seed']} | {100 * r['forget_accuracy_after']:.0f} | "
            f"{100 * r['remain_accuracy_after']:.1f} | {growth:+.0f} | {r['erase_seconds']:.0f} |"
        )
    return lines + [""]


def _growth(runs: list[dict]) -> str:
    return f"{100 * np.mean([frechet_growth(r) for r in runs]):+.1f}%"


def paired_wins(runs: list[dict], others: list[dict]) -> tuple[int, int]:
    """(in how many of the digit/seed pairs both have, ``runs`` grew the distance less than ``others``; pairs)."""
    theirs = {(r["digit"], r["seed"]): frechet_growth(r) for r in others}
    pairs = [(frechet_growth(r), theirs[(r["digit"], r["seed"])]) for r in runs if (r["digit"], r["seed"]) in theirs]
    return sum(mine < other for mine, other in pairs), len(pairs)


def _findings(groups: dict[str, list[dict]], by_variant: dict[str, list[dict]]) -> list[str]:
    """What the candidates show, with their mean Fréchet growth on the compare runs (``groups``) and, for η,
    the run-for-run comparison over every digit (``by_variant``)."""
    reference = "previous_defaults"  # the defaults these candidates chose, before the whole-run speed-ups
    needed = (reference, "data_target", "both_targets", "data_remain_only", "no_empty_prompts", "remain_batch_4")
    if not all(name in groups for name in needed):
        return []
    g = {name: _growth(runs) for name, runs in groups.items()}
    erasing = [name for name in groups if name != "data_remain_only"]
    erased = all(r["forget_accuracy_after"] <= TARGETS["forget_accuracy_after"] for n in erasing for r in groups[n])
    runs_of_default = len(groups[reference])
    lines = [
        f"What the candidates show (mean Fréchet growth on these {runs_of_default} runs; "
        + (
            "every EraseDiff row met the forget target):"
            if erased
            else "not every EraseDiff row met the forget target):"
        ),
        "",
        "- **The remain target decides it.** Regressing the data of generated D_r (the paper's L_r) grows the",
        f"  distance by {g['data_target']}, as much as fine-tuning on that data with no erasure at all",
        f"  ({g['data_remain_only']}): the model narrows towards its own guided samples. Half data, half teacher",
        f"  still gives {g['both_targets']}; the teacher alone {g[reference]}.",
        "- **Empty prompts and a remain-heavy batch** each matter on top of it: without the 10% empty-prompt",
        f"  samples {g['no_empty_prompts']}, with 4 remain samples a step instead of 16 {g['remain_batch_4']}.",
    ]
    if all(name in g for name in ("eta_1", "eta_0.1", "eta_0.02")):
        pairs = [
            f"than {name.removeprefix('eta_')} in {wins} of {count}"
            for name in ("eta_0.1", "eta_0.02")
            for wins, count in [paired_wins(by_variant[reference], by_variant[name])]
        ]
        lines.append(
            f"- **η**: {g['eta_1']} at η = 1, {g['eta_0.1']} at 0.1, {g[reference]} at 0.05 (the default), "
            f"{g['eta_0.02']} at 0.02. Run for run over every digit, 0.05 grew the distance less "
            + " and ".join(pairs)
            + " (sections above)."
        )
    if "remain_guidance_1" in g and "forget_batch_16" in g:
        lines.append(
            f"- Within the spread: D_r generated without guidance ({g['remain_guidance_1']}, and faster to make), "
            f"16 forget samples a step ({g['forget_batch_16']})."
        )
    every = ("default", "steps_300", "steps_200", "lambda_every_step", "previous_defaults", "real_remain")
    if all(by_variant.get(name) for name in (*every, "steps_300_real_remain", "previous_real_remain")) and all(
        name in g for name in ("generation_ddim_20", "remain_batch_8", "steps_150")
    ):
        a = {name: _growth(by_variant[name]) for name in (*every, "steps_300_real_remain", "previous_real_remain")}
        pairs = (
            ("default", "previous_defaults"),
            ("real_remain", "previous_real_remain"),
            ("steps_300", "default"),
            ("steps_300_real_remain", "real_remain"),
            ("steps_200", "lambda_every_step"),
        )
        wins = {pair: paired_wins(by_variant[pair[0]], by_variant[pair[1]]) for pair in pairs}

        def won(pair) -> str:
            return f"{wins[pair][0]} of {wins[pair][1]}"

        lines += [
            f"- **The whole-run speed-ups**, over every digit: today's defaults {a['default']} against "
            f"{a['previous_defaults']} before them (lower in {won(('default', 'previous_defaults'))} runs), with real "
            f"D_r {a['real_remain']} against {a['previous_real_remain']} (lower in "
            f"{won(('real_remain', 'previous_real_remain'))}). Fewer steps: 300 gave {a['steps_300']} (lower than 400 "
            f"in {won(('steps_300', 'default'))}) but {a['steps_300_real_remain']} with real D_r (lower in "
            f"{won(('steps_300_real_remain', 'real_remain'))}), so the default stayed 400; 200 gave {a['steps_200']}. "
            f"At 200 steps λ on every step was worse than on one step in ten, {a['lambda_every_step']} (one in ten "
            f"lower in {won(('steps_200', 'lambda_every_step'))}).",
            f"- Cheaper still, on these runs (at 200 steps): DDIM-20 data {g['generation_ddim_20']}, 8 remain samples "
            f"a step {g['remain_batch_8']}, 150 steps {g['steps_150']}.",
        ]
    if "first_defaults" in g:
        lines.append(
            f"- The script's first defaults (data target, η = 1, 4 + 4 samples, no empty prompts): {g['first_defaults']}."
        )
    return lines + [""]


_METHOD_NAMES = {
    "erasediff": "EraseDiff (main command)",
    "erasediff_300_steps": "EraseDiff, 300 steps",
    "erasediff_200_steps": "EraseDiff, 200 steps",
    "esd_x": "ESD-x",
    "esd_u": "ESD-u",
    "uce": "UCE",
}


def _methods_section(methods: dict[str, list[dict]], digits, seeds) -> list[str]:
    """The whole-run comparison with ESD and UCE (run_methods.py), and EraseDiff's phase breakdown."""
    if not any(methods.values()):
        return []
    lines = [
        f"## The whole run against ESD and UCE (digits {', '.join(map(str, digits))} × seeds {', '.join(map(str, seeds))})",
        "",
        "Each run is a process of its own with one thread, timed from start to exit (imports, loading, data,",
        "training, saving), two at a time on the 2-core machine with the methods interleaved, then measured like",
        "the rows above. ESD-x and ESD-u: 300 iterations, lr 1e-4, batch 1, partial sampling with 10 DDIM steps,",
        "negative guidance 1; UCE: the other nine digits preserved (benchmarks/digits/esd.py, uce.py, written",
        "from the papers; settings fixed, not tuned). Command: `python benchmarks/digits/run_methods.py`.",
        "",
        "| method | runs | forget acc. % after | remain acc. % after | Fréchet growth % | runs ≤ +10% | whole run s |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, runs in methods.items():
        if not runs:
            continue
        growth = [100 * frechet_growth(r) for r in runs]
        lines.append(
            f"| {_METHOD_NAMES[method]} | {len(runs)} | {_mean_std([r['forget_accuracy_after'] for r in runs], 100)} | "
            f"{_mean_std([r['remain_accuracy_after'] for r in runs], 100)} | {_mean_std(growth)} | "
            f"{sum(g <= 10 for g in growth)} / {len(runs)} | {_mean_std([r['process_seconds'] for r in runs])} |"
        )
    theirs = {(r["digit"], r["seed"]): r["process_seconds"] for r in methods.get("esd_x", [])}
    for method in ("erasediff", "erasediff_300_steps", "erasediff_200_steps"):
        runs = [r for r in methods.get(method, []) if (r["digit"], r["seed"]) in theirs]
        ratios = [r["process_seconds"] / theirs[(r["digit"], r["seed"])] for r in runs]
        if ratios:
            spread = np.std(ratios, ddof=1) if len(ratios) > 1 else 0.0
            lines += [
                "",
                f"{_METHOD_NAMES[method]}: the whole run over ESD-x's, pair by pair, {np.mean(ratios):.2f}× ± "
                f"{spread:.2f} ({sum(x <= 1 for x in ratios)} of {len(ratios)} pairs at or under 1×).",
            ]
    ours = methods.get("erasediff", []) or methods.get("erasediff_200_steps", [])
    if ours:
        phases = {name: np.mean([r["phase_seconds"][name] for r in ours]) for name in ours[0]["phase_seconds"]}
        outside = np.mean([r["process_seconds"] - sum(r["phase_seconds"].values()) for r in ours])
        lines += [
            "",
            f"Where the whole run of {_METHOD_NAMES[ours[0]['method']]} goes (mean seconds over its runs; the run's own "
            "end summary):",
            "",
            "| " + " | ".join([*phases, "outside the script"]) + " |",
            "|" + "---|" * (len(phases) + 1),
            "| " + " | ".join(f"{seconds:.1f}" for seconds in [*phases.values(), outside]) + " |",
        ]
    return lines + [""]


def _section(title: str, runs: list[dict], description: str, name: str) -> list[str]:
    return [f"## {title}", "", *_main_table(runs, description, name), *_verdict(runs)]


def write_report(
    by_variant: dict[str, list[dict]],
    variants: dict,
    first_setting: list[dict],
    second_setting: list[dict],
    path: str = REPORT_FILE,
    methods: dict[str, list[dict]] | None = None,
) -> str:
    """Writes docs/benchmarks.md (and the plot) from each variant's records (run_benchmark.records_by_variant),
    the whole-run comparison's records by method (run_methods.current_records), the earlier settings' results
    and the hand-run search records."""
    from benchmarks.digits.run_benchmark import (
        ALL_DIGIT_VARIANTS,
        BEFORE_SPEEDUPS,
        COMPARE_DIGITS,
        SEARCH_FILE,
        SEEDS,
        planned_runs,
        read_results,
    )

    training, judge, base = _read_json("model/training.json"), _read_json("judge.json"), _read_json("base_scores.json")
    lines = [
        "# Benchmarks: erasing digits from a tiny text-to-image model",
        "",
        "<!-- Generated by benchmarks/digits/run_benchmark.py (report.py); edit those, not this file. -->",
        "",
        "No Stable Diffusion weights can be downloaded here, so this benchmark builds a real, small text-to-image",
        "model from data that ships offline and measures erasure the way the paper's DDPM experiment does: the",
        "accuracy of a classifier on images generated for the forgotten class, and a distance on the remaining",
        "classes. Every figure is a mean ± standard deviation over runs (digits × seeds).",
        "",
        f"Targets: forget accuracy after ≤ {TARGETS['forget_accuracy_after']:.0%}, remain accuracy drop ≤ 1 point, "
        "Fréchet growth ≤ 10%. Command: `python benchmarks/digits/run_benchmark.py` (resumable; `--shard K/N` splits",
        "it over N one-thread processes).",
        "",
        *_testbed(training, judge),
        *(_base_table(base) if base else []),
        *_section(
            "The main command: no data of your own (D_r generated)",
            by_variant["default"],
            variants["default"].description,
            "default",
        ),
        *_section(
            "The same defaults with real remain images",
            by_variant["real_remain"],
            variants["real_remain"].description,
            "real_remain",
        ),
        *_methods_section(methods or {}, COMPARE_DIGITS, SEEDS),
        *[
            line
            for name in ("previous_defaults", "previous_real_remain", *ALL_DIGIT_VARIANTS)
            if by_variant[name]
            for line in _section(
                f"Every digit with `{name}`: {variants[name].description}"
                + (
                    ""
                    if name not in ALL_DIGIT_VARIANTS
                    else ", the rest as the defaults before the speed-ups"
                    if BEFORE_SPEEDUPS.items() <= variants[name].flags.items()
                    else ", the rest as today's defaults"
                ),
                by_variant[name],
                variants[name].description,
                name,
            )
        ],
        f"## Candidates and baselines (digits {', '.join(map(str, COMPARE_DIGITS))} × seeds {', '.join(map(str, SEEDS))})",
        "",
        "The rows above `previous_defaults` change what their description says from today's defaults; the rows",
        "from it on, from the defaults before the whole-run speed-ups (400 steps, λ every step, D_f/D_r from DDIM",
        "at 20 steps: the defaults they chose). D_r is generated in every row but real_remain's.",
        "",
        _HEADER,
    ]
    groups = {}
    for name, variant in variants.items():
        runs = [r for r in by_variant[name] if r["digit"] in COMPARE_DIGITS]
        if runs:
            groups[name] = runs
            lines.append(_row(name, summarize(runs), variant.description))
    if groups:
        write_plot(groups)
        lines += ["", f"![forget accuracy vs utility]({os.path.basename(PLOT_FILE)})", ""]
        lines += _findings(groups, by_variant)
    planned = len(set(planned_runs("all")))
    recorded = sum(len(runs) for runs in by_variant.values())
    lines += [
        f"Runs recorded: {recorded} of {planned} planned (`benchmarks/digits/results.jsonl`). "
        + ("Complete the rest with" if recorded < planned else "Rerun after a change of defaults with"),
        "`python benchmarks/digits/run_benchmark.py` (it skips recorded runs).",
        "",
    ]
    search = read_results(SEARCH_FILE)
    if search:
        lines += [
            "## The search that chose the defaults (hand-run, one run per row)",
            "",
            "Before the suites above, candidate settings ran on three digit/seed pairs, the hardest of the earlier",
            "settings ((3, 0), (1, 1), (8, 1)), each as one change to the script's first defaults (data target,",
            "η = 1, 4 forget + 4 remain samples a step with `--forget_batch_size` then equal to `--train_batch_size`,",
            "no empty prompts) on top of erase.MAIN_COMMAND_FLAGS (`benchmarks/digits/search.jsonl`):",
            "",
            *_search_table(search),
        ]
    if second_setting:
        lines += [
            "## The second setting: real D_r and flags tuned by hand",
            "",
            "Before this page's suites, the benchmark ran with real remain images and flags chosen by hand (η = 0.02,",
            "64 remain + 16 forget samples a step, 10% empty prompts, 200 steps, the data target;",
            f"`benchmarks/digits/results_tuned_real_remain.jsonl`, {len(second_setting)} runs). It met the targets",
            "only with real D_r; with generated D_r the same flags grew the Fréchet distance threefold:",
            "",
            _HEADER,
        ]
        for name in ("default", "generated_remain", "remain_only", "eta_1.0", "anchor", "neggrad"):
            runs = [r for r in second_setting if r["variant"] == name and r["digit"] in COMPARE_DIGITS]
            if runs:
                lines.append(_row(name, summarize(runs), _flags_text(runs[0]["flags"]) or "the tuned flags"))
        lines.append("")
    if first_setting:
        first_main = [r for r in first_setting if r["variant"] == "default"]
        lines += [
            "## The first setting: D_r generated by the base model, η = 1",
            "",
            "The benchmark's first complete run (`benchmarks/digits/results_generated_remain.jsonl`, "
            f"{len(first_setting)} runs) used D_r",
            "generated by the base model (16 images per remaining digit), η = 1, 100 steps, 16 remain samples per",
            "step and no empty prompts. It erased every digit and kept remain accuracy, but the Fréchet distance of the",
            "remaining digits tripled, and the remain-only baseline (λ = 0) tripled it just as much:",
            "",
            _HEADER,
            _row("default, all digits", summarize(first_main), "first setting"),
        ]
        for name in ("remain_only", "neggrad"):
            runs = [r for r in first_setting if r["variant"] == name]
            if runs:
                lines.append(_row(name, summarize(runs), _flags_text(runs[0]["flags"])))
        lines.append("")
    tuning = read_results(TUNING_FILE)
    if tuning:
        lines += [
            "## How the second setting was found (hand-run, one run per row)",
            "",
            "Each row is one erasure with the first setting's flags changed as shown (`benchmarks/digits/tuning.jsonl`;",
            "“real D_r” = the real remain images of the benchmark; “empty captions” = that share of the real images",
            "captioned “”), measured like the benchmark (50 images per class).",
            "",
            *_tuning_table(tuning),
        ]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    return path
