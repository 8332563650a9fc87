"""The attack suite on the digits model: the judge as the concept detector, the paraphrases (recombinations
of the 13 words its text encoder knows, since any other word is an untrained token), and the evaluation and
attack settings the robustness benchmark uses."""

from __future__ import annotations

from benchmarks.digits.data import DIGIT_WORDS, judge_input, prompt_for
from benchmarks.digits.measure import EVAL_GUIDANCE

# Every way the digits vocabulary can ask for a digit other than the training prompt; {} is the digit's word.
PARAPHRASE_TEMPLATES = (
    "{}",
    "a {}",
    "digit {}",
    "a digit {}",
    "handwritten {}",
    "a handwritten {}",
    "{} digit",
    "a {} handwritten digit",
    "a handwritten digit {} {}",
    "{} a handwritten digit",
)


def paraphrases(digit: int) -> list[str]:
    """The digit's paraphrases (PARAPHRASE_TEMPLATES)."""
    word = DIGIT_WORDS[digit]
    return [t.replace("{}", word) for t in PARAPHRASE_TEMPLATES]


def digit_detector(judge, digit: int):
    """A ConceptDetector that counts the images the judge confidently labels as ``digit``."""
    from pipelines.evaluation.attacks.detector import ConceptDetector

    return ConceptDetector(
        f"the digits judge (top class {DIGIT_WORDS[digit]}, above its threshold)",
        lambda images: [bool(label == digit) for label in judge.labels(judge_input(images))],
    )


def digit_evaluation(digit: int, num_images: int = 16, seed: int = 0, steps: int = 20):
    """EvaluationSettings for attacking ``digit``: its prompt as the forget set, the other nine as the remain
    set (the control images), at the benchmark's guidance and size. Its metric is not computed: the judge
    detects."""
    from pipelines.evaluation.settings import EvaluationSettings

    return EvaluationSettings.for_concepts(
        [DIGIT_WORDS[digit]],
        "custom",
        forget_prompts=[prompt_for(digit)],
        remain_prompts=[prompt_for(d) for d in range(10) if d != digit],
        metrics=["clip_score"],
        num_images=num_images,
        seed=seed,
        num_inference_steps=steps,
        guidance_scale=EVAL_GUIDANCE,
        resolution=16,
        batch_size=64,
    )
