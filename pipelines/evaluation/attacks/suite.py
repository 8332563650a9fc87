"""Running the attack suite on an erased model against its base: the attacker's concept and control images,
every attack of the settings with its control, and what is written (attacks.json, images and grids under
``<output_dir>/attacks``; the report puts the table into metrics.md)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

import torch
from PIL import Image

from ...data_sources import load_image, read_image_folder
from ...families import family_of_pipeline
from ...prompts import concept_templates
from ...randomness import derive_seed
from ..images import generate_prompt_images
from ..settings import EvaluationSettings
from .denoising import image_latents, resolution_of, training_noising_of
from .detector import ConceptDetector
from .settings import AttackSettings

ATTACKS_DIR = "attacks"
ATTACKS_FILE = "attacks.json"
_ATTACK_STREAM = 6  # derive_seed stream of attack images (5: evaluation images)
_CONCEPT_IMAGES, _CONTROL_IMAGES, _ATTACK_IMAGES = 0, 1, 2


@dataclass
class AttackContext:
    """What every attack works with: the two pipelines, the settings, the detector, and the attacker's images
    (concept and control) as latents with their captions."""

    attacked: object
    base: object
    evaluation: EvaluationSettings
    settings: AttackSettings
    detector: ConceptDetector
    concept_images: list
    concept_captions: list[str]
    control_images: list
    control_captions: list[str]
    templates: list[str] = field(default_factory=list)
    no_attack_share: float = 0.0  # the concept's share in the erased model's images of the forget prompts

    def __post_init__(self):
        self.device = self.attacked.device
        self.resolution = resolution_of(self.attacked, self.evaluation.resolution)
        self.family = family_of_pipeline(self.attacked)
        self.noising = training_noising_of(self.attacked)
        self.concept_latents = image_latents(self.attacked, self.concept_images, self.resolution)
        self.control_latents = image_latents(self.attacked, self.control_images, self.resolution)

    def generate(self, pipeline, prompts: list[str]) -> list[list[Image.Image]]:
        """``evaluation.num_images`` images of each prompt; image (i, j) has the same seed in every attack."""
        seed = self.evaluation.seed
        return generate_prompt_images(
            pipeline, prompts, self.evaluation, lambda i, j: derive_seed(seed, _ATTACK_STREAM, _ATTACK_IMAGES, i, j)
        )

    def token_attack_result(self, name: str, learn) -> tuple[dict, dict]:
        """Runs ``learn(context, latents, captions, seed)`` on the concept and on the control images (same
        seed, same budget) and compares the concept's share in what each draws."""
        seed = self.settings.seed
        prompts, rows, losses, state = learn(self, self.concept_latents, self.concept_captions, seed)
        control = learn(self, self.control_latents, self.control_captions, seed)
        control_prompts, control_rows, control_losses, control_state = control
        success = self.detector.share([i for row in rows for i in row])
        control = self.detector.share([i for row in control_rows for i in row])
        result = {
            "success": success,
            "control_success": control,
            "beyond_control": success - control,
            "final_loss": sum(losses[-10:]) / len(losses[-10:]),
            "control_final_loss": sum(control_losses[-10:]) / len(control_losses[-10:]),
            "tokens": state,
            "control_tokens": control_state,
            "budget": self.settings.budget(name, len(self.concept_images)),
        }
        return result, {"attack": (prompts, rows), "control": (control_prompts, control_rows)}


def attacker_images(base, evaluation: EvaluationSettings, settings: AttackSettings) -> tuple[list, list, list, list]:
    """The concept images (the user's folder, or the base model's images of the forget prompts) and the
    control images (the user's folder, or the base model's of the remain prompts), with captions."""

    def from_base(prompts: list[str], stream: int) -> tuple[list, list]:
        count = settings.images
        chosen = [prompts[k % len(prompts)] for k in range(count)]
        one_each = EvaluationSettings(**{**asdict(evaluation), "num_images": 1})
        rows = generate_prompt_images(
            base, chosen, one_each, lambda i, j: derive_seed(evaluation.seed, _ATTACK_STREAM, stream, i)
        )
        return [row[0] for row in rows], chosen

    def from_folder(folder: str, argument: str, fallback_prompts: list[str]) -> tuple[list, list]:
        found = read_image_folder(folder, argument)
        images = [load_image(ref) for ref in found.images[: settings.images]]
        captions = [
            c or fallback_prompts[k % len(fallback_prompts)] for k, c in enumerate(found.captions[: settings.images])
        ]
        return images, captions

    if settings.images_dir:
        concept, concept_captions = from_folder(settings.images_dir, "--attack_images_dir", evaluation.forget_prompts)
    else:
        concept, concept_captions = from_base(evaluation.forget_prompts, _CONCEPT_IMAGES)
    if settings.control_images_dir:
        control, control_captions = from_folder(
            settings.control_images_dir, "--attack_control_images_dir", evaluation.remain_prompts
        )
    else:
        control, control_captions = from_base(evaluation.remain_prompts, _CONTROL_IMAGES)
    return concept, concept_captions, control, control_captions


def run_attack_suite(
    attacked,
    base,
    evaluation: EvaluationSettings,
    settings: AttackSettings,
    detector: ConceptDetector,
    output_dir: str | None = None,
) -> dict:
    """Runs ``settings.attacks`` on the ``attacked`` pipeline (``base``: the original model, which draws the
    attacker's images and is the embedding attack's target). Neither pipeline is changed: what an attack
    trains is a copy. Returns the JSON-ready results; with ``output_dir``, also writes them, the images and
    a grid per attack under ``output_dir/attacks``."""
    from .embedding import run_embedding
    from .inversion import run_inversion
    from .paraphrase import run_paraphrase
    from .relearn import run_relearn

    settings.check()
    runners = {
        "paraphrase": run_paraphrase,
        "inversion": run_inversion,
        "embedding": run_embedding,
        "relearn": run_relearn,
    }
    concept, concept_captions, control, control_captions = attacker_images(base, evaluation, settings)
    context = AttackContext(
        attacked,
        base,
        evaluation,
        settings,
        detector,
        concept,
        concept_captions,
        control,
        control_captions,
        concept_templates(evaluation.forget_prompts, evaluation.concepts, evaluation.concept_type),
    )
    plain = {
        model: detector.share([i for row in context.generate(pipeline, evaluation.forget_prompts) for i in row])
        for model, pipeline in (("erased", attacked), ("base", base))
    }
    context.no_attack_share = plain["erased"]
    results = {
        "detector": detector.name,
        "seed": settings.seed,
        "not_run": [a for a in runners if a not in settings.attacks],
        "no_attack": {"success": plain["erased"], "base_success": plain["base"]},
        "attacks": {},
    }
    images = {}
    for name in settings.attacks:
        with torch.enable_grad():
            results["attacks"][name], images[name] = runners[name](context)
    if output_dir is not None:
        grids = write_attack_images(images, os.path.join(output_dir, ATTACKS_DIR))
        results["grids"] = {attack: os.path.relpath(path, output_dir) for attack, path in grids.items()}
        with open(os.path.join(output_dir, ATTACKS_DIR, ATTACKS_FILE), "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return results


def write_attack_images(images: dict, folder: str) -> dict[str, str]:
    """``folder/<attack>/<attack|control>/`` PNGs with a metadata.jsonl (file_name, text), and
    ``folder/grid_<attack>.png``: a row per prompt (at most 4), the attack's images then the control's."""
    from ...validation import before_after_grid

    os.makedirs(folder, exist_ok=True)
    grids = {}
    for attack, variants in images.items():
        for variant, (prompts, rows) in variants.items():
            target = os.path.join(folder, attack, variant)
            os.makedirs(target, exist_ok=True)
            with open(os.path.join(target, "metadata.jsonl"), "w", encoding="utf-8") as handle:
                for i, (prompt, row) in enumerate(zip(prompts, rows)):
                    for j, image in enumerate(row):
                        name = f"{i:05d}_{j:02d}.png"
                        image.save(os.path.join(target, name))
                        handle.write(json.dumps({"file_name": name, "text": prompt}) + "\n")
        attack_rows = variants["attack"][1][:4]
        control_rows = variants["control"][1][:4] if "control" in variants else [[] for _ in attack_rows]
        grids[attack] = os.path.join(folder, f"grid_{attack}.png")
        before_after_grid(attack_rows, control_rows).save(grids[attack])
    return grids
