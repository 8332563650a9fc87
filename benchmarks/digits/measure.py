"""Measuring a digits model with the judge, always from the same seeds: per class, the fraction of images
generated for that class's prompt that the judge confidently labels as that class (accuracy) and the
fraction it rejects; and the Fréchet distance of judge features between generated and held-out real images
of the remaining classes (pipelines/evaluation/frechet.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from benchmarks.digits.data import judge_input, load_split, prompt_for, real_as_images
from benchmarks.digits.judge import Judge
from pipelines.evaluation.frechet import feature_frechet_distance

EVAL_SEED = 1234
EVAL_STEPS = 20
EVAL_GUIDANCE = 3.0


@dataclass
class ModelScores:
    """Judge scores of one model; ``accuracy[d]`` and ``rejected[d]`` are fractions of class d's images."""

    accuracy: list[float]
    rejected: list[float]
    images_per_class: int
    frechet_by_forgotten: dict = field(default_factory=dict)  # forgotten digit → FD of the other classes

    def forget_accuracy(self, digit: int) -> float:
        return self.accuracy[digit]

    def remain_accuracy(self, digit: int) -> float:
        return float(np.mean([a for d, a in enumerate(self.accuracy) if d != digit]))

    def to_dict(self) -> dict:
        return asdict(self)


def load_pipeline(model_dir: str, unet_dir: str | None = None):
    """The digits pipeline from ``model_dir``, optionally with the (erased) UNet saved in ``unet_dir``."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    pipeline = StableDiffusionPipeline.from_pretrained(model_dir, safety_checker=None, requires_safety_checker=False)
    if unet_dir is not None:
        pipeline.unet = UNet2DConditionModel.from_pretrained(unet_dir)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def generate(pipeline, digits, images_per_class: int, seed: int = EVAL_SEED, batch_size: int = 100) -> dict:
    """``images_per_class`` images for each digit's prompt, [n, 16, 16, 3] uint8 per digit; image i of
    digit d always starts from the same noise, so models compare image for image."""
    import torch

    requests = [(d, i) for d in digits for i in range(images_per_class)]
    images: dict[int, list[np.ndarray]] = {d: [] for d in digits}
    for start in range(0, len(requests), batch_size):
        batch = requests[start : start + batch_size]
        generators = [torch.Generator().manual_seed(seed * 100_003 + d * 1_009 + i) for d, i in batch]
        with torch.no_grad():
            output = pipeline(
                [prompt_for(d) for d, _ in batch],
                num_inference_steps=EVAL_STEPS,
                guidance_scale=EVAL_GUIDANCE,
                height=16,
                width=16,
                generator=generators,
                output_type="np",
            ).images
        for (d, _), image in zip(batch, output):
            images[d].append(np.round(image * 255).astype(np.uint8))
    return {d: np.stack(v) for d, v in images.items()}


_REAL_FEATURES: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def real_features(judge: Judge) -> tuple[np.ndarray, np.ndarray]:
    """Judge features and labels of the held-out real digits (the Fréchet reference)."""
    key = id(judge)
    if key not in _REAL_FEATURES:
        _, _, test_x, test_y = load_split()
        _REAL_FEATURES[key] = (judge.features(judge_input(real_as_images(test_x))), test_y)
    return _REAL_FEATURES[key]


def score_images(judge: Judge, images: dict, forgotten=()) -> ModelScores:
    """Per-class confident accuracy and reject fraction of generated ``images``; for each digit in
    ``forgotten``, the Fréchet distance over the other classes."""
    digits = sorted(images)
    labels = {d: judge.labels(judge_input(images[d])) for d in digits}
    accuracy = [float((labels[d] == d).mean()) if d in labels else float("nan") for d in range(10)]
    rejected = [float((labels[d] == -1).mean()) if d in labels else float("nan") for d in range(10)]
    scores = ModelScores(accuracy, rejected, len(images[digits[0]]))
    real, real_labels = real_features(judge)
    for forgotten_digit in forgotten:
        kept = [d for d in digits if d != forgotten_digit]
        generated = judge.features(judge_input(np.concatenate([images[d] for d in kept])))
        reference = real[np.isin(real_labels, kept)]
        scores.frechet_by_forgotten[int(forgotten_digit)] = feature_frechet_distance(generated, reference)
    return scores


def measure(pipeline, judge: Judge, images_per_class: int, forgotten=(), digits=range(10)) -> ModelScores:
    """Generates from the fixed seeds and scores the images."""
    return score_images(judge, generate(pipeline, list(digits), images_per_class), forgotten)
