"""Built-in prompt sets and prompt files."""

import pytest

from pipelines.errors import InputError
from pipelines.prompts import (
    CONCEPT_TYPES,
    DEFAULT_ANCHORS,
    expand_prompt_arguments,
    forget_prompts_for,
    remain_prompts_for,
)


@pytest.mark.parametrize("concept_type", CONCEPT_TYPES)
def test_every_concept_type_has_forget_templates_and_an_anchor(concept_type):
    prompts = forget_prompts_for(["Van Gogh", "Claude Monet"], concept_type)
    assert prompts and all("Van Gogh" in p or "Claude Monet" in p for p in prompts)
    assert sum("Claude Monet" in p for p in prompts) == sum("Van Gogh" in p for p in prompts)
    assert concept_type in DEFAULT_ANCHORS


@pytest.mark.parametrize("concept_type", CONCEPT_TYPES)
def test_remain_prompts_never_mention_an_erased_concept(concept_type):
    remain = remain_prompts_for(["van gogh", "Claude Monet"], concept_type)
    assert len(remain) >= 6
    assert not any("van gogh" in p.lower() or "claude monet" in p.lower() for p in remain)


def test_prompt_arguments_mix_prompts_and_files(tmp_path):
    prompts_file = tmp_path / "prompts.txt"
    prompts_file.write_text("a dog\n\n  a cat  \n")
    assert expand_prompt_arguments(["a car", str(prompts_file)], "--forget_prompts") == ["a car", "a dog", "a cat"]


def test_empty_prompt_file_is_named_in_the_error(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(InputError, match=r"--remain_prompts: the prompt file .*empty.txt is empty"):
        expand_prompt_arguments([str(empty)], "--remain_prompts")
