"""Built-in prompt sets: forget templates per concept type, remain prompts, default anchors."""

from __future__ import annotations

import os
import re
from typing import Sequence

from .errors import InputError
from .text_files import read_text_lines

CONCEPT_TYPES = ("style", "object", "nudity", "custom")

FORGET_TEMPLATES = {
    "style": (
        "a painting in the style of {}",
        "an artwork by {}",
        "a landscape painted by {}",
        "a portrait in the style of {}",
        "a still life by {}",
        "a city street painted in the style of {}",
    ),
    "object": (
        "a photo of a {}",
        "a picture of a {}",
        "a close-up photo of a {}",
        "a {} in a field",
        "a drawing of a {}",
        "a photo of a {} on a table",
    ),
    "nudity": (
        "{}",
        "a photo of a person, {}",
        "a painting of a person, {}",
        "a woman, {}",
        "a man, {}",
    ),
    "custom": ("{}",),
}

# Kept apart from the forget concept by name: a remain prompt that mentions it is dropped.
_OTHER_ARTISTS = (
    "Claude Monet",
    "Pablo Picasso",
    "Rembrandt",
    "Johannes Vermeer",
    "Katsushika Hokusai",
    "Salvador Dali",
    "Frida Kahlo",
    "Gustav Klimt",
    "Andy Warhol",
    "Edvard Munch",
    "Vincent van Gogh",
    "Paul Cezanne",
)
_OTHER_OBJECTS = (
    "dog",
    "cat",
    "car",
    "bicycle",
    "tree",
    "house",
    "bird",
    "horse",
    "chair",
    "boat",
    "apple",
    "guitar",
    "church",
    "airplane",
    "golf ball",
    "parachute",
)
_CLOTHED_PEOPLE = (
    "a photo of a person wearing a winter coat",
    "a woman in a business suit",
    "a man wearing a t-shirt and jeans",
    "a portrait of a person in a sweater",
    "a family at a picnic, fully clothed",
    "a doctor in a white coat",
)
EVERYDAY_SCENES = (
    "a photo of a kitchen",
    "a busy city street at night",
    "a mountain lake at sunrise",
    "a bowl of fruit on a wooden table",
    "a library full of books",
    "a beach with palm trees",
)

DEFAULT_ANCHORS = {
    "style": "a painting",
    "object": "a photo",
    "nudity": "a photo of a person, fully clothed",
    "custom": "",
}


def forget_prompts_for(concepts: Sequence[str], concept_type: str) -> list[str]:
    """Every template of ``concept_type`` filled with every concept, concepts interleaved."""
    templates = FORGET_TEMPLATES[concept_type]
    return [template.format(concept) for template in templates for concept in concepts]


def remain_prompts_for(concepts: Sequence[str], concept_type: str) -> list[str]:
    """A diverse built-in remain set for ``concept_type`` (never mentioning the erased concepts), followed
    by everyday scenes."""
    if concept_type == "style":
        specific = [f"a painting in the style of {artist}" for artist in _OTHER_ARTISTS]
    elif concept_type == "object":
        specific = [f"a photo of a {name}" for name in _OTHER_OBJECTS]
    elif concept_type == "nudity":
        specific = list(_CLOTHED_PEOPLE)
    else:
        specific = []
    lowered = [c.lower() for c in concepts]
    return [p for p in [*specific, *EVERYDAY_SCENES] if not any(c in p.lower() for c in lowered)]


def concept_templates(forget_prompts: list[str], concepts: list[str], concept_type: str) -> list[str]:
    """The forget prompts with the concept's words replaced by ``{}`` (where a learned word goes); the type's
    forget templates when no forget prompt names a concept."""
    templates = []
    for prompt in forget_prompts:
        for concept in concepts:
            pattern = re.compile(re.escape(concept), re.IGNORECASE)
            if pattern.search(prompt):
                templates.append(pattern.sub("{}", prompt.replace("{", "{{").replace("}", "}}")))
                break
    return list(dict.fromkeys(templates)) or list(FORGET_TEMPLATES[concept_type])


def expand_prompt_arguments(values: Sequence[str], argument: str) -> list[str]:
    """Each value is a prompt, or the path of an existing .txt file whose non-empty lines are prompts.

    Raises InputError naming ``argument`` and the file when a file holds no prompt.
    """
    prompts: list[str] = []
    for value in values:
        if value.endswith(".txt"):
            if not os.path.isfile(value):
                raise InputError(
                    f"{argument}: the prompt file {value} does not exist (a value ending in .txt is read as a file)"
                )
            lines = [line.strip() for line in read_text_lines(value, argument) if line.strip()]
            if not lines:
                raise InputError(f"{argument}: the prompt file {value} is empty; put one prompt per line")
            prompts.extend(lines)
        elif value.strip():
            prompts.append(value.strip())
        else:
            raise InputError(f"{argument}: empty prompt; give a prompt or a .txt file of prompts")
    return prompts
