"""Randomness per global sample: the number of processes does not change what any sample draws."""

import torch

from pipelines.objective import ForgetNoise
from pipelines.randomness import SampleStream, derive_seed, global_positions


def test_two_processes_together_take_the_positions_of_one_process_with_twice_the_batch():
    for micro_batch in range(3):
        single = global_positions(micro_batch, rank=0, world_size=1, local_batch_size=4)
        split = global_positions(micro_batch, 0, 2, 2) + global_positions(micro_batch, 1, 2, 2)
        assert single == split


def test_a_sample_draws_the_same_numbers_whatever_batch_it_is_in():
    stream = SampleStream(seed=7, stream_id=1, num_items=5)
    whole = stream.draw([0, 1, 2, 3], (4, 2, 2), 1000, ForgetNoise())
    part = SampleStream(seed=7, stream_id=1, num_items=5).draw([2, 3], (4, 2, 2), 1000, ForgetNoise())
    assert whole.item_indices[2:] == part.item_indices
    for name in ("augmentation", "latent_noise", "timesteps", "noise", "forget_noise"):
        assert torch.equal(getattr(whole, name)[2:], getattr(part, name))


def test_each_epoch_shows_every_item_once_in_a_seeded_order():
    stream = SampleStream(seed=3, stream_id=2, num_items=6)
    first, second = [stream.item_index(p) for p in range(6)], [stream.item_index(p) for p in range(6, 12)]
    assert sorted(first) == sorted(second) == list(range(6))
    assert first != second or first != list(range(6))
    assert [SampleStream(3, 2, 6).item_index(p) for p in range(6)] == first


def test_streams_and_seeds_draw_different_numbers():
    assert derive_seed(0, 1, 5) != derive_seed(0, 2, 5) != derive_seed(1, 1, 5)
    forget = SampleStream(0, 1, 3).draw([0], (4,), 1000)
    remain = SampleStream(0, 2, 3).draw([0], (4,), 1000)
    assert not torch.equal(forget.noise, remain.noise)
    assert forget.forget_noise is None


def test_empty_prompt_choices_are_per_sample_at_the_given_rate_and_change_no_other_draw():
    plain = SampleStream(seed=4, stream_id=2, num_items=9).draw(list(range(400)), (2,), 1000)
    dropping = SampleStream(seed=4, stream_id=2, num_items=9).draw(list(range(400)), (2,), 1000, None, 0.25)
    part = SampleStream(seed=4, stream_id=2, num_items=9).draw([398, 399], (2,), 1000, None, 0.25)
    assert plain.empty_prompt is None
    assert 0.18 < dropping.empty_prompt.float().mean() < 0.32
    assert torch.equal(dropping.empty_prompt[398:], part.empty_prompt)
    for name in ("augmentation", "latent_noise", "timesteps", "noise"):
        assert torch.equal(getattr(plain, name), getattr(dropping, name))
