"""train_method mapping and LoRA placement on a tiny UNet."""

import pytest
from diffusers import UNet2DConditionModel

from pipelines.options import DEFAULT_LORA_TARGET_MODULES, TRAIN_METHODS
from pipelines.trainable import add_lora_adapters, select_trainable_parameters, selected_by_train_method


@pytest.fixture
def unet(tiny_model):
    return UNet2DConditionModel.from_pretrained(tiny_model, subfolder="unet")


def test_train_methods_select_the_documented_parts(unet):
    names = [n for n, _ in unet.named_parameters()]
    chosen = {m: [n for n in names if selected_by_train_method(n, m)] for m in TRAIN_METHODS}
    assert chosen["full"] == names
    assert chosen["xattn"] and all(".attn2." in n for n in chosen["xattn"])
    assert chosen["selfattn"] and all(".attn1." in n for n in chosen["selfattn"])
    assert not any(
        ".attn2." in n or n.startswith(("time_embedding", "conv_out", "conv_norm_out")) for n in chosen["noxattn"]
    )
    assert any(n.startswith("time_embedding") for n in names)
    assert set(chosen["notime"]) == {
        n for n in names if not n.startswith(("time_embedding", "conv_out", "conv_norm_out"))
    }


def test_select_trainable_parameters_freezes_the_rest(unet):
    trainable = select_trainable_parameters(unet, "xattn")
    assert {id(p) for p in trainable} == {id(p) for n, p in unet.named_parameters() if ".attn2." in n}
    assert all(not p.requires_grad for n, p in unet.named_parameters() if ".attn2." not in n)


def test_lora_adapters_sit_only_inside_the_selected_part(unet):
    trainable = add_lora_adapters(
        unet, rank=2, lora_alpha=2.0, train_method="selfattn", target_modules=DEFAULT_LORA_TARGET_MODULES
    )
    names = [n for n, p in unet.named_parameters() if p.requires_grad]
    assert len(trainable) == len(names) > 0
    assert all("lora_" in n and ".attn1." in n for n in names)


def test_lora_targets_outside_the_part_are_refused(unet):
    with pytest.raises(ValueError, match="--lora_target_modules"):
        add_lora_adapters(unet, 2, 2.0, "xattn", ["conv1"])
