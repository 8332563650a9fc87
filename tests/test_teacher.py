"""The frozen base model as the remain target: its prediction is θ₀'s, it builds no graph, and it leaves
the trained model (weights, LoRA switches, requires_grad) as it found it."""

import pytest
import torch
from diffusers import UNet2DConditionModel

from pipelines.options import DEFAULT_LORA_TARGET_MODULES
from pipelines.teacher import FrozenTeacher
from pipelines.trainable import add_lora_adapters, select_trainable_parameters


@pytest.fixture
def unet(tiny_model):
    return UNet2DConditionModel.from_pretrained(tiny_model, subfolder="unet")


def inputs():
    generator = torch.Generator().manual_seed(0)
    return (
        torch.randn(2, 4, 8, 8, generator=generator),
        torch.tensor([10, 900]),
        torch.randn(2, 24, 16, generator=generator),
    )


def forward(call):
    latents, timesteps, hidden = inputs()
    return call(latents, timesteps, encoder_hidden_states=hidden, return_dict=False)[0]


@pytest.mark.parametrize("train_method", ["full", "xattn"])
def test_the_teacher_of_a_fine_tuned_unet_predicts_as_the_base_did(unet, train_method):
    with torch.no_grad():
        base_prediction = forward(unet)
    trainable = select_trainable_parameters(unet, train_method)
    teacher = FrozenTeacher(unet, uses_lora=False, weight_dtype=torch.float32)
    assert teacher.extra_bytes == sum(p.numel() * 4 for p in trainable)  # only the trainable part is copied
    with torch.no_grad():
        for parameter in trainable:
            parameter.add_(torch.randn_like(parameter) * 0.1)
    trained = [p.detach().clone() for p in trainable]
    prediction = teacher.predict(unet, forward)
    torch.testing.assert_close(prediction, base_prediction)
    assert not prediction.requires_grad
    assert not torch.allclose(forward(unet), base_prediction)  # the trained model itself did move
    assert all(torch.equal(p, t) for p, t in zip(trainable, trained))
    assert all(p.requires_grad for p in trainable)


def test_the_teacher_of_a_lora_unet_switches_its_adapters_off_and_always_back_on(unet):
    with torch.no_grad():
        base_prediction = forward(unet)
    trainable = add_lora_adapters(unet, 4, 4.0, "full", DEFAULT_LORA_TARGET_MODULES)
    with torch.no_grad():
        for parameter in trainable:
            parameter.add_(0.1)  # lora_B leaves zero: the adapters change the output
    teacher = FrozenTeacher(unet, uses_lora=True, weight_dtype=torch.float32)
    assert teacher.extra_bytes == 0
    torch.testing.assert_close(teacher.predict(unet, forward), base_prediction)
    assert all(p.requires_grad for p in trainable)
    assert not torch.allclose(forward(unet), base_prediction)  # adapters on again

    def failing(call):
        forward(call)
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        teacher.predict(unet, failing)
    assert all(p.requires_grad for p in trainable)
    assert not torch.allclose(forward(unet), base_prediction)
