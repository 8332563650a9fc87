"""Measuring an erasure: each metric of the settings applied to the base and the erased model's images of
both prompt sets, as JSON-ready numbers (evaluation_report turns them into the table)."""

from __future__ import annotations

import os

from ..errors import InputError, first_line
from .images import PROMPT_SETS
from .settings import EvaluationSettings


def _flat(rows: list[list]) -> list:
    return [item for row in rows for item in row]


def _mean(values) -> float:
    values = list(values)
    return float(sum(values) / len(values))


def _read_reference_images(folder: str) -> list:
    from ..data_sources import load_image

    names = sorted(n for n in os.listdir(folder) if n.lower().endswith((".png", ".jpg", ".jpeg", ".webp")))
    if len(names) < 2:
        raise InputError(f"--reference_dir {folder} needs at least 2 images (.png, .jpg, .jpeg, .webp)")
    return [load_image(os.path.join(folder, n)) for n in names]


def check_metric_models(settings: EvaluationSettings) -> None:
    """Reads the configs (small files) of the CLIP and classifier models the metrics use, so that a wrong
    model id or forget label fails before any image is generated."""
    from transformers import AutoConfig

    from .classifier import label_ids_for

    def config_of(model: str, option: str):
        try:
            return AutoConfig.from_pretrained(model)
        except OSError as error:
            raise InputError(f"--{option} {model} cannot be loaded ({first_line(error)})") from error

    if {"clip_score", "clip_accuracy", "fd_clip"} & set(settings.metrics):
        config_of(settings.clip_model, "clip_model")
    if "classifier" in settings.metrics:
        config = config_of(settings.classifier_model, "classifier_model")
        label_ids_for(config.id2label, settings.classifier_labels or settings.concepts, settings.classifier_model)


def measure_erasure(images: dict, settings: EvaluationSettings, image_dirs: dict, device) -> dict:
    """Every metric of ``settings`` on ``images[model][prompt set]`` (models "base" and "erased"); the
    JSON-ready results, keyed by metric. ``image_dirs[model][prompt set]`` are the saved images (for fid)."""
    from .classifier import ImageClassifier, label_ids_for
    from .clip import ClipModel, clip_scores, zero_shot_predictions
    from .fid import inception_fid
    from .frechet import feature_frechet_distance
    from .nudenet import count_exposed, detect_nudity

    models = ("base", "erased")
    flat = {m: {s: _flat(images[m][s]) for s in PROMPT_SETS} for m in models}
    results: dict = {}

    if "nudenet" in settings.metrics:
        results["nudenet"] = {
            "threshold": settings.nudenet_threshold,
            **{
                s: {m: count_exposed(detect_nudity(flat[m][s]), settings.nudenet_threshold) for m in models}
                for s in PROMPT_SETS
            },
        }

    if {"clip_score", "clip_accuracy", "fd_clip"} & set(settings.metrics):
        clip = ClipModel(settings.clip_model, device)
        embeddings = {m: {s: clip.image_embeddings(flat[m][s]) for s in PROMPT_SETS} for m in models}
        if "clip_score" in settings.metrics:
            results["clip_score"] = {"model": settings.clip_model}
            for s in PROMPT_SETS:
                prompt_embeddings = clip.text_embeddings(settings.prompts(s)).repeat_interleave(settings.num_images, 0)
                results["clip_score"][s] = {
                    m: clip_scores(embeddings[m][s], prompt_embeddings).mean().item() for m in models
                }
        if "clip_accuracy" in settings.metrics:
            concept_texts, alternatives = settings.concept_texts(), settings.alternative_texts()
            class_embeddings = clip.text_embeddings([*concept_texts, *alternatives])
            results["clip_accuracy"] = {
                "model": settings.clip_model,
                "concept_texts": concept_texts,
                "alternatives": alternatives,
                "chance": len(concept_texts) / len(class_embeddings),
                "forget": {
                    m: _mean(
                        p < len(concept_texts)
                        for p in zero_shot_predictions(embeddings[m]["forget"], class_embeddings)
                    )
                    for m in models
                },
            }
        if "fd_clip" in settings.metrics:
            features = {m: {s: embeddings[m][s].double().numpy() for s in PROMPT_SETS} for m in models}
            results["fd_clip"] = {
                "model": settings.clip_model,
                **{
                    s: {"base_vs_erased": feature_frechet_distance(features["base"][s], features["erased"][s])}
                    for s in PROMPT_SETS
                },
            }
            if settings.reference_dir:
                reference = clip.image_embeddings(_read_reference_images(settings.reference_dir)).double().numpy()
                results["fd_clip"]["reference_dir"] = settings.reference_dir
                for m in models:
                    results["fd_clip"]["remain"][f"reference_vs_{m}"] = feature_frechet_distance(
                        reference, features[m]["remain"]
                    )
        del clip

    if "classifier" in settings.metrics:
        classifier = ImageClassifier(settings.classifier_model, device)
        names = settings.classifier_labels or settings.concepts
        forget_ids = set(label_ids_for(classifier.id2label, names, settings.classifier_model))
        remain = {m: classifier.top1(flat[m]["remain"]) for m in models}
        results["classifier"] = {
            "model": settings.classifier_model,
            "forget_labels": [classifier.id2label[i] for i in sorted(forget_ids)],
            "forget": {m: _mean(p in forget_ids for p in classifier.top1(flat[m]["forget"])) for m in models},
            "remain": {"agreement": _mean(a == b for a, b in zip(remain["base"], remain["erased"]))},
        }
        del classifier

    if "fid" in settings.metrics:
        remain_dirs = {m: image_dirs[m]["remain"] for m in models}
        results["fid"] = {
            "remain": {"base_vs_erased": inception_fid(remain_dirs["base"], remain_dirs["erased"], device)}
        }
        if settings.reference_dir:
            results["fid"]["reference_dir"] = settings.reference_dir
            for m in models:
                results["fid"]["remain"][f"reference_vs_{m}"] = inception_fid(
                    settings.reference_dir, remain_dirs[m], device
                )
    return results
