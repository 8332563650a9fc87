"""The EraseDiff math on tiny tensors, against hand-computed values."""

import copy
import math

import pytest
import torch
from diffusers import DDPMScheduler

from pipelines.gradients import ForgetGradientBuffer
from pipelines.objective import (
    ForgetNoise,
    anchor_loss,
    bome_lambda,
    constraint_gap,
    cosine_lambda,
    denoising_target,
    estimate_forget_minimum,
    implied_noise,
    known_forget_minimum,
    neggrad_loss,
    shifted_noise_loss,
)


def vec(*values):
    return [torch.tensor(values, dtype=torch.float32)]


@pytest.mark.parametrize(
    "remain, gap, eta, expected",
    [
        ((1.0, 0.0), (0.0, 2.0), 1.0, 1.0),  # orthogonal: λ = η
        ((-1.0, 1.0), (2.0, 0.0), 0.5, 1.0),  # (0.5·4 + 2) / 4
        ((3.0, 0.0), (1.0, 0.0), 1.0, 0.0),  # (1 − 3) / 1 < 0: clamped at 0
        ((0.5, 0.0), (1.0, 1.0), 2.0, 1.75),  # (2·2 − 0.5) / 2
    ],
)
def test_bome_lambda_matches_hand_computation(remain, gap, eta, expected):
    assert float(bome_lambda(vec(*remain), vec(*gap), eta)) == pytest.approx(expected)


def test_bome_lambda_sums_over_several_parameter_tensors():
    remain = [torch.tensor([1.0]), torch.tensor([[0.0, 2.0]])]
    gap = [torch.tensor([1.0]), torch.tensor([[1.0, 0.0]])]
    # ‖∇q‖² = 2, ⟨∇L_r, ∇q⟩ = 1, η = 1 → (2 − 1) / 2
    assert float(bome_lambda(remain, gap, 1.0)) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "remain, gap, eta, expected",
    [
        ((1.0, 0.0), (1.0, 1.0), 1.0, 1.0 - 1.0 / math.sqrt(2.0)),
        ((-1.0, 0.0), (1.0, 0.0), 1.0, 2.0),  # opposite directions: cos = −1
        ((1.0, 1.0), (2.0, 2.0), 0.5, 0.0),  # 0.5 − 1 < 0: clamped at 0
    ],
)
def test_cosine_lambda_matches_hand_computation(remain, gap, eta, expected):
    assert float(cosine_lambda(vec(*remain), vec(*gap), eta)) == pytest.approx(expected)


@pytest.mark.parametrize("rule", [bome_lambda, cosine_lambda])
def test_lambda_is_zero_when_the_gap_gradient_vanishes(rule):
    assert float(rule(vec(1.0, 2.0), vec(0.0, 1e-13), 1.0)) == 0.0


def test_default_forget_noise_is_uniform_on_zero_one():
    draws = ForgetNoise().sample((200_000,), torch.Generator().manual_seed(0))
    assert draws.min() >= 0.0 and draws.max() < 1.0
    assert float(draws.mean()) == pytest.approx(0.5, abs=0.01)
    assert float(draws.std()) == pytest.approx(1 / math.sqrt(12), abs=0.01)


def test_gaussian_forget_noise_has_the_requested_moments():
    draws = ForgetNoise("gaussian", 1.0, 0.3).sample((200_000,), torch.Generator().manual_seed(0))
    assert float(draws.mean()) == pytest.approx(1.0, abs=0.01)
    assert float(draws.std()) == pytest.approx(0.3, abs=0.01)


def test_known_minimum_of_shifted_noise_is_attained_by_predicting_the_mean():
    noise = ForgetNoise("uniform", 0.5, 0.25)
    forget_noise = noise.sample((400_000,), torch.Generator().manual_seed(1))
    f_at_mean = shifted_noise_loss(torch.full_like(forget_noise, 0.5), forget_noise)
    assert known_forget_minimum("shifted_noise", noise) == pytest.approx(0.0625)
    assert float(f_at_mean) == pytest.approx(0.0625, rel=0.01)
    assert known_forget_minimum("anchor", noise) == 0.0
    assert known_forget_minimum("neggrad", noise) is None
    assert constraint_gap(0.1, 0.0625) == pytest.approx(0.0375)


def test_shifted_noise_loss_for_epsilon_models_compares_output_with_forget_noise():
    output = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    forget_noise = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    predicted = implied_noise(output, torch.zeros_like(output), torch.tensor([0.3, 0.7]), "epsilon")
    # ((−0.5)² + 0.5² + 1.5² + 2.5²) / 4
    assert float(shifted_noise_loss(predicted, forget_noise)) == pytest.approx((0.25 + 0.25 + 2.25 + 6.25) / 4)


def test_implied_noise_of_a_v_prediction_model_recovers_the_noise():
    scheduler = DDPMScheduler(prediction_type="v_prediction")
    generator = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(3, 4, 2, 2, generator=generator), torch.randn(3, 4, 2, 2, generator=generator)
    timesteps = torch.tensor([10, 500, 990])
    velocity = denoising_target(latents, noise, timesteps, "v_prediction", scheduler)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    recovered = implied_noise(velocity, noisy, scheduler.alphas_cumprod[timesteps], "v_prediction")
    torch.testing.assert_close(recovered, noise, atol=1e-5, rtol=1e-5)
    forget_noise = torch.full_like(noise, 0.5)
    assert float(shifted_noise_loss(recovered, forget_noise)) == pytest.approx(
        float(((noise - 0.5) ** 2).mean()), rel=1e-5
    )


def test_anchor_target_carries_no_gradient():
    output = torch.randn(2, 3, requires_grad=True)
    anchor = torch.randn(2, 3, requires_grad=True)
    anchor_loss(output, anchor).backward()
    assert anchor.grad is None
    torch.testing.assert_close(output.grad, 2 * (output - anchor).detach() / output.numel())


def test_neggrad_is_the_negated_denoising_loss():
    output, target = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0])
    assert float(neggrad_loss(output, target)) == pytest.approx(-2.5)


def _linear_problem():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    forget_x, remain_x = torch.randn(4, 3), torch.randn(4, 3)
    forget_target, remain_target = torch.full((4, 2), 0.5), torch.randn(4, 2)

    def forget_value():
        return torch.nn.functional.mse_loss(model(forget_x), forget_target)

    def remain_value():
        return torch.nn.functional.mse_loss(model(remain_x), remain_target)

    return model, forget_value, remain_value


def test_inner_steps_leave_parameters_grads_and_optimizer_state_unchanged():
    model, forget_value, remain_value = _linear_problem()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    remain_value().backward()
    optimizer.step()
    remain_value().backward()
    parameters_before = [p.detach().clone() for p in model.parameters()]
    grads_before = [p.grad.clone() for p in model.parameters()]
    state_before = copy.deepcopy(optimizer.state_dict())

    f_now = float(forget_value().detach())
    estimate = estimate_forget_minimum(list(model.parameters()), forget_value, inner_steps=5, inner_learning_rate=0.5)

    assert estimate < f_now
    for parameter, value, grad in zip(model.parameters(), parameters_before, grads_before):
        assert torch.equal(parameter.detach(), value)
        assert torch.equal(parameter.grad, grad)
    state_after = optimizer.state_dict()
    for key, before in state_before["state"].items():
        for name, tensor in before.items():
            assert torch.equal(torch.as_tensor(state_after["state"][key][name]), torch.as_tensor(tensor))


@pytest.mark.parametrize("mode", ["bome", "cosine"])
def test_gradient_handed_to_optimizer_is_remain_plus_lambda_forget(mode):
    model, forget_value, remain_value = _linear_problem()
    parameters = list(model.parameters())
    remain_grads = torch.autograd.grad(remain_value(), parameters)
    forget_grads = torch.autograd.grad(forget_value(), parameters)
    flat_r = torch.cat([g.reshape(-1) for g in remain_grads])
    flat_f = torch.cat([g.reshape(-1) for g in forget_grads])
    eta = 0.7
    if mode == "bome":
        expected_lambda = max(eta * flat_f.dot(flat_f) - flat_r.dot(flat_f), 0.0) / flat_f.dot(flat_f)
    else:
        expected_lambda = max(eta - flat_r.dot(flat_f) / (flat_r.norm() * flat_f.norm()), 0.0)

    buffer = ForgetGradientBuffer(parameters)
    with buffer.collecting_forget():
        forget_value().backward()
    assert all(p.grad is None for p in parameters)  # ∇f went to the buffer, not to .grad
    remain_value().backward()
    lam = buffer.apply_lambda(mode, eta)

    assert float(lam) == pytest.approx(float(expected_lambda), rel=1e-5)
    for parameter, g_r, g_f in zip(parameters, remain_grads, forget_grads):
        torch.testing.assert_close(parameter.grad, g_r + float(expected_lambda) * g_f)
    assert all(g is None for g in buffer.forget_grads)


def test_forget_gradients_accumulate_across_micro_steps():
    model, forget_value, remain_value = _linear_problem()
    parameters = list(model.parameters())
    buffer = ForgetGradientBuffer(parameters)
    for _ in range(2):
        with buffer.collecting_forget():
            forget_value().backward()
        remain_value().backward()
    forget_grads = torch.autograd.grad(forget_value(), parameters)
    remain_grads = torch.autograd.grad(remain_value(), parameters)
    for stored, single in zip(buffer.forget_grads, forget_grads):
        torch.testing.assert_close(stored, 2 * single)
    for parameter, single in zip(parameters, remain_grads):
        torch.testing.assert_close(parameter.grad, 2 * single)
