"""The model card (``README.md`` in the output folder): YAML metadata (huggingface_hub's ModelCardData and
diffusers' ``populate_model_card``) and a body that records what was erased, from which data, how, and how
to load the result."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .families import FAMILIES, PIPELINE_CLASS_NAMES, SD
from .options import effective_learning_rate
from .outputs import LORA_WEIGHTS_FILE
from .validation import VALIDATION_GRID_FILE, widget_image_name

CARD_FILE = "README.md"
COMMON_TAGS = (
    "text-to-image",
    "diffusers",
    "diffusers-training",
    "erasediff",
    "machine-unlearning",
    "concept-erasure",
)
# Licenses of well-known bases; every SD 1.x checkpoint carries the CreativeML OpenRAIL-M licence.
KNOWN_LICENSES = {
    "CompVis/stable-diffusion-v1-1": "creativeml-openrail-m",
    "CompVis/stable-diffusion-v1-2": "creativeml-openrail-m",
    "CompVis/stable-diffusion-v1-3": "creativeml-openrail-m",
    "CompVis/stable-diffusion-v1-4": "creativeml-openrail-m",
    "runwayml/stable-diffusion-v1-5": "creativeml-openrail-m",
    "stable-diffusion-v1-5/stable-diffusion-v1-5": "creativeml-openrail-m",
    "stabilityai/stable-diffusion-2": "openrail++",
    "stabilityai/stable-diffusion-2-base": "openrail++",
    "stabilityai/stable-diffusion-2-1": "openrail++",
    "stabilityai/stable-diffusion-2-1-base": "openrail++",
    "stabilityai/stable-diffusion-xl-base-1.0": "openrail++",
    "black-forest-labs/FLUX.1-schnell": "apache-2.0",
    "black-forest-labs/FLUX.1-dev": "other",
    "stabilityai/stable-diffusion-3-medium-diffusers": "other",
    "stabilityai/stable-diffusion-3.5-medium": "other",
    "stabilityai/stable-diffusion-3.5-large": "other",
}
# The Hub's "other" licences by name, as those bases' own cards give them (the text is the base's LICENSE.md).
OTHER_LICENSE_NAMES = {
    "black-forest-labs/FLUX.1-dev": "flux-1-dev-non-commercial-license",
    "stabilityai/stable-diffusion-3-medium-diffusers": "stabilityai-ai-community",
    "stabilityai/stable-diffusion-3.5-medium": "stabilityai-ai-community",
    "stabilityai/stable-diffusion-3.5-large": "stabilityai-ai-community",
}
SD1_CROSS_ATTENTION_DIM = 768
PAPER_BIBTEX = """@article{wu2024erasediff,
  title   = {EraseDiff: Erasing Data Influence in Diffusion Models},
  author  = {Wu, Jing and Le, Trung and Hayat, Munawar and Harandi, Mehrtash},
  journal = {arXiv preprint arXiv:2401.05779},
  year    = {2024}
}"""
_PROMPTS_SHOWN = 12


@dataclass
class DataSummary:
    """How one of the two sets (forget or remain) was made."""

    sources: list[str]
    count: int
    prompts: list[str] = field(default_factory=list)


def base_model_license(base_model: str, cross_attention_dim: int | None = None) -> str | None:
    """The base model's licence where known: a known Hub id, a local folder's own card, or SD 1.x's."""
    if base_model in KNOWN_LICENSES:
        return KNOWN_LICENSES[base_model]
    local_card = os.path.join(base_model, CARD_FILE)
    if os.path.isfile(local_card):
        from huggingface_hub import ModelCard

        license_name = ModelCard.load(local_card).data.license
        if license_name:
            return license_name
    if cross_attention_dim == SD1_CROSS_ATTENTION_DIM:
        return "creativeml-openrail-m"
    return None


def other_license(base_model: str) -> dict:
    """``license_name`` and ``license_link`` of a known base under an "other" licence (none for the rest)."""
    if base_model not in OTHER_LICENSE_NAMES:
        return {}
    link = f"https://huggingface.co/{base_model}/blob/main/LICENSE.md"
    return {"license_name": OTHER_LICENSE_NAMES[base_model], "license_link": link}


LORA_TAGS = ("lora", "template:sd-lora")  # as diffusers' LoRA training scripts tag their cards


def card_tags(family: str, is_lora: bool) -> list[str]:
    """The card's tags: the model family's, the common ones, and diffusers' LoRA tags for LoRA runs."""
    return [*FAMILIES[family].card_tags, *COMMON_TAGS, *(LORA_TAGS if is_lora else ())]


def code_version() -> str:
    """This code's git commit, when it runs from a checkout (the card records what made the model)."""
    import subprocess

    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(
            ["git", "-C", here, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "not from a git checkout"
    return f"commit {commit.stdout.strip()}" if commit.returncode == 0 else "not from a git checkout"


def widget(prompts: list[str]) -> list[dict]:
    """The Hub widget's examples: each validation prompt with this model's first image for it."""
    return [{"text": prompt, "output": {"url": widget_image_name(i, "after")}} for i, prompt in enumerate(prompts)]


def load_snippet(
    base_model: str, model_reference: str, is_lora: bool, prompt: str, family: str = SD, without_t5: bool = False
) -> str:
    """Python that loads this artifact with stock diffusers (the test runs it as written); an SD3 model trained
    without T5 is loaded without T5."""
    name = PIPELINE_CLASS_NAMES[family]
    left_out = ", text_encoder_3=None, tokenizer_3=None" if without_t5 else ""
    lines = [f"from diffusers import {name}", ""]
    if is_lora:
        lines += [
            f"pipe = {name}.from_pretrained({base_model!r}{left_out})",
            f"pipe.load_lora_weights({model_reference!r})",
        ]
    else:
        lines += [f"pipe = {name}.from_pretrained({model_reference!r}{left_out})"]
    lines.append(f"image = pipe({prompt!r}).images[0]")
    return "\n".join(lines)


def _set_section(title: str, summary: DataSummary) -> list[str]:
    lines = [f"**{title}** — {summary.count} images: " + "; ".join(summary.sources) + "."]
    if summary.prompts:
        shown = summary.prompts[:_PROMPTS_SHOWN]
        more = len(summary.prompts) - len(shown)
        lines.append(
            "Prompts: " + ", ".join(f"`{p}`" for p in shown) + (f" and {more} more" if more > 0 else "") + "."
        )
    return lines


REMAIN_TARGET_WORDS = {
    "data": "data (the remain images' noise, the paper's L_r)",
    "teacher": "teacher (the frozen base model's prediction on the noised remain latents)",
    "both": "both (the mean of the data and teacher losses)",
}


def _samples_per_step(args, per_process: int) -> str:
    processes = getattr(args, "num_processes", 1)
    total = per_process * processes * args.gradient_accumulation_steps
    return f"{per_process} per process × {processes} processes × {args.gradient_accumulation_steps} accumulation = {total}"


def _refresh_words(args) -> str:
    steps = args.lambda_refresh_steps
    return ", computed every step" if steps == 1 else f", computed on one step in {steps}"


def _flow_matching_words(args) -> str:
    scheme = args.weighting_scheme
    if scheme == "logit_normal":
        words = f"σ drawn logit-normally (mean {args.logit_mean:g}, std {args.logit_std:g})"
    elif scheme == "mode":
        words = f"σ drawn by the mode scheme (scale {args.mode_scale:g})"
    else:
        words = "σ drawn uniformly" + (f", each sample's loss weighted by {scheme}" if scheme != "none" else "")
    if getattr(args, "precondition_outputs", 0):
        words += "; outputs preconditioned (x̂₀ regressed onto x₀)"
    if args.guidance_scale is not None:
        words += f"; guidance embedding {args.guidance_scale:g}"
    return words + ("; T5 dropped" if args.t5 == "drop" else "")


def _hyperparameter_rows(args) -> list[tuple[str, str]]:
    rows = [
        ("remain objective", REMAIN_TARGET_WORDS[args.remain_target]),
        ("forget target", args.forget_target),
        ("ε_f", f"{args.forget_noise}, mean {args.forget_noise_mean:g}, std {args.forget_noise_std:.4g}")
        if args.forget_target == "shifted_noise"
        else ("anchor prompt", repr(args.anchor_prompt))
        if args.forget_target == "anchor"
        else None,
        ("flow matching", _flow_matching_words(args)) if getattr(args, "weighting_scheme", None) else None,
        ("λ rule", args.lambda_mode + ("" if args.lambda_mode == "fixed" else _refresh_words(args))),
        (
            "λ" if args.lambda_mode == "fixed" else "η",
            f"{args.lambda_value:g}" if args.lambda_mode == "fixed" else f"{args.eta:g}",
        ),
        ("inner steps K", f"{args.inner_steps}" + (" (closed-form f*)" if args.inner_steps == 0 else "")),
        (
            "adversarial erasure",
            f"the adversarial word retrained every {args.adversarial_refresh_steps} steps ({args.adversarial_steps} "
            f"Adam steps at {args.adversarial_learning_rate:g})",
        )
        if getattr(args, "adversarial_refresh_steps", 0) > 0
        else None,
        (
            "relearning resistance",
            f"f also after {args.relearn_resistance_steps} simulated fine-tuning steps of "
            f"{args.relearn_resistance_step_size:g}, weight {args.relearn_resistance_weight:g}",
        )
        if getattr(args, "relearn_resistance_steps", 0) > 0
        else None,
        ("training steps", str(args.max_train_steps)),
        ("remain samples per step", _samples_per_step(args, args.train_batch_size)),
        ("forget samples per step", _samples_per_step(args, args.forget_batch_size)),
        ("remain samples with the empty prompt", f"{args.proportion_empty_prompts:.0%}")
        if args.proportion_empty_prompts > 0
        else None,
        (
            "learning rate",
            f"{args.learning_rate:g} ({args.lr_scheduler})"
            + (f", scaled to {effective_learning_rate(args):g} by --scale_lr" if args.scale_lr else ""),
        ),
        ("train_method", args.train_method),
        (
            "LoRA",
            f"rank {args.rank}, alpha {args.lora_alpha:g}, modules {','.join(args.lora_target_modules)}"
            if args.use_lora
            else "no",
        ),
        ("precision", args.mixed_precision or "accelerate default"),
        ("resolution", str(args.resolution)),
        ("seed", str(args.seed)),
    ]
    return [row for row in rows if row is not None]


def card_body(
    args,
    forget: DataSummary,
    remain: DataSummary,
    model_reference: str,
    evaluation: str | None = None,
    fused_folder: str | None = None,
    family: str = SD,
) -> str:
    """The Markdown body of the card; ``evaluation`` is the evaluation report's Markdown, when one was run."""
    concepts = (
        ", ".join(f"**{c}**" for c in args.concept) + f" ({args.concept_type})"
        if args.concept
        else "the concept shown by the forget prompts"
    )
    base = args.pretrained_model_name_or_path
    base_is_local = os.path.exists(base)
    sample_prompt = (forget.prompts or remain.prompts or ["a photo"])[0]
    lines = [
        f"# EraseDiff: {', '.join(args.concept) or 'concept'} erased from {os.path.basename(base.rstrip('/')) or base}",
        "",
        f"This model is `{base}` with {concepts} erased by "
        "[EraseDiff](https://arxiv.org/abs/2401.05779), trained with `train_erasediff.py`"
        + (
            f" as LoRA weights (`{LORA_WEIGHTS_FILE}`)."
            if args.use_lora and args.save_as != "pipeline"
            else " as a full diffusers pipeline."
        ),
    ]
    if base_is_local:
        lines += [
            "",
            f"The base model was the local folder `{base}`; point the loader at your copy of it (`base_model=`).",
        ]
    lines += [
        "",
        "## How to use",
        "",
        "```python",
        load_snippet(
            base,
            model_reference,
            args.use_lora and args.save_as != "pipeline",
            sample_prompt,
            family,
            getattr(args, "t5", None) == "drop",
        ),
        "```",
    ]
    if fused_folder:
        lines += [
            "",
            f"A standalone pipeline with the adapter fused in is in `{fused_folder}/` "
            f"(`{PIPELINE_CLASS_NAMES[family]}.from_pretrained` on that folder).",
        ]
    lines += [
        "",
        "Or with `load_erased_pipeline` from `pipelines/loading.py` of the code that made this model "
        f"(EraseDiff for diffusers, `train_erasediff.py`, {code_version()}), which finds the base model by itself:",
        "",
        "```python",
        "from pipelines.loading import load_erased_pipeline",
        "",
        f"pipe = load_erased_pipeline({model_reference!r})",
        "```",
        "",
        "## Before and after",
        "",
        "Each row is one prompt (forget prompts first); the left half shows the base model and the right half "
        "this model, with the same seeds.",
        "",
        f"![before and after]({VALIDATION_GRID_FILE})",
    ]
    if evaluation:
        lines += ["", evaluation.rstrip()]
    lines += ["", "## Training data", "", *_set_section("Forget set", forget), "", *_set_section("Remain set", remain)]
    lines += [
        "",
        "## Method and hyper-parameters",
        "",
        "EraseDiff solves `min L_r(θ) s.t. f(θ) − f* ≤ 0`: it keeps the denoising loss on the remain set while "
        "driving the forget loss to its minimum, stepping along `∇L_r + λ∇f`.",
        "",
        "| setting | value |",
        "|---|---|",
    ]
    lines += [f"| {name} | {value} |" for name, value in _hyperparameter_rows(args)]
    lines += [
        "",
        "## Limitations",
        "",
        "- Erasure is not a guarantee. It lowers how often the concept appears for the prompts it was trained on, "
        "but paraphrases, other languages, related concepts and adversarial prompts or embeddings can still recover it.",
        "- Erasing one concept can change how the model draws related concepts (other artists, similar objects).",
        "- The base model's own biases and limitations remain.",
        "",
        "## Citation",
        "",
        "```bibtex",
        PAPER_BIBTEX,
        "```",
    ]
    return "\n".join(lines) + "\n"


def write_model_card(
    args,
    forget: DataSummary,
    remain: DataSummary,
    repo_id: str | None,
    cross_attention_dim: int | None = None,
    evaluation: str | None = None,
    fused_folder: str | None = None,
    family: str = SD,
    validation_prompts: list[str] | None = None,
):
    """Builds the card and writes ``<output_dir>/README.md``; returns the card. LoRA cards carry the widget
    of diffusers' LoRA cards (the validation prompts with this model's images)."""
    from diffusers.utils.hub_utils import populate_model_card
    from huggingface_hub import ModelCard, ModelCardData

    # Built locally, never from the Hub: a rerun must describe this run, not an older card in the repo.
    metadata = ModelCardData(
        license=base_model_license(args.pretrained_model_name_or_path, cross_attention_dim if family == SD else None),
        **other_license(args.pretrained_model_name_or_path),
        library_name="diffusers",
        base_model=args.pretrained_model_name_or_path,
        inference=True,
        **({"widget": widget(validation_prompts)} if args.use_lora and validation_prompts else {}),
    )
    body = card_body(args, forget, remain, repo_id or args.output_dir, evaluation, fused_folder, family)
    card = ModelCard.from_template(metadata, template_str="---\n{{ card_data }}\n---\n\n{{ body }}", body=body)
    populate_model_card(card, tags=card_tags(family, args.use_lora))
    card.save(os.path.join(args.output_dir, CARD_FILE))
    return card


def summary_of(images, generated_prompts: list[str]) -> DataSummary:
    """A DataSummary for a CaptionedImages set; prompts are those generated from, else the distinct captions."""
    return DataSummary(list(images.sources), len(images), list(generated_prompts or dict.fromkeys(images.captions)))
