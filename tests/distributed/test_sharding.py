"""Sharding the global batch over ranks, and why ``num_data`` stays the data set's size on each rank
(in one process: the ranks are emulated by slicing)."""

import pytest
import torch
from pyro.infer import Trace_ELBO

from pyrovae.data import Dataset, load_dataset
from tests.distributed.support import pair


def batches(dataset, world, rank, seed=0, batch_size=10):
    return list(dataset.batches(batch_size, torch.Generator().manual_seed(seed), shard=(rank, world)))


@pytest.mark.parametrize("world", [2, 3])
def test_the_ranks_shards_put_together_are_the_single_process_batches(world):
    # 47 examples: four full global batches of 10 and a last one of 7, cut to a multiple of the ranks.
    dataset = Dataset.from_tensor(torch.arange(47 * 2, dtype=torch.float32).reshape(47, 2) / 100,
                                  y=torch.arange(47))
    single = batches(dataset, 1, 0)
    shards = [batches(dataset, world, rank) for rank in range(world)]
    per_rank = 10 // world
    assert all(len(s) == len(single) for s in shards)
    for step, (_x, y) in enumerate(single):
        kept = len(y) - len(y) % world
        together = torch.cat([shards[r][step][1] for r in range(world)])
        assert torch.equal(together, y[:kept])
        if step < 4:
            assert all(len(shards[r][step][1]) == per_rank for r in range(world))


def test_dynamic_binarization_draws_noise_for_the_rank_s_own_part_reproducibly():
    dataset = load_dataset("digits", "train", binarize="dynamic").subset(64)
    intensities = load_dataset("digits", "train").subset(64).x
    single = batches(dataset, 1, 0, seed=4, batch_size=32)
    shards = [batches(dataset, 2, rank, seed=4, batch_size=32) for rank in range(2)]
    again = batches(dataset, 2, 1, seed=4, batch_size=32)
    for step, (x, _) in enumerate(single):
        together = torch.cat([shards[0][step][0], shards[1][step][0]])
        assert together.shape == x.shape and set(together.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(again[step][0], shards[1][step][0])
    # Each rank binarizes its own examples: black pixels stay 0 and white ones 1.
    order = torch.cat([shards[0][0][0], shards[1][0][0]])
    rows = torch.randperm(64, generator=torch.Generator().manual_seed(4))[:32]
    assert torch.equal(order[intensities[rows] == 0], torch.zeros_like(order[intensities[rows] == 0]))
    assert torch.equal(order[intensities[rows] == 1], torch.ones_like(order[intensities[rows] == 1]))


def test_a_shard_outside_the_ranks_is_refused():
    dataset = Dataset.from_tensor(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="rank"):
        next(dataset.batches(2, shard=(2, 2)))


def gradient(model, guide, x, num_data):
    model.zero_grad(), guide.zero_grad()
    Trace_ELBO(max_plate_nesting=1).differentiable_loss(model, guide, x, num_data=num_data).backward()
    return torch.cat([p.grad.flatten() for m in (model, guide) for p in m.parameters() if p.grad is not None])


@pytest.mark.parametrize("world", [2, 4])
def test_averaging_the_ranks_gradients_with_num_data_n_gives_the_global_batch_gradient(world):
    # A rank's b = B / W examples are scaled by N / b; DDP's mean over W ranks is then N / B times the
    # sum over the global batch. The global latent outside the plate counts once on each rank, so
    # once in the mean. (A point-mass guide: no sampling noise to tell the two computations apart.)
    train = load_dataset("digits", "train", binarize="static").subset(500)
    model, guide = pair()
    x = train.x[:64]
    single = gradient(model, guide, x, num_data=len(train))
    b = 64 // world
    ranks = [gradient(model, guide, x[r * b:(r + 1) * b], num_data=len(train)) for r in range(world)]
    torch.testing.assert_close(torch.stack(ranks).mean(0), single, rtol=1e-5, atol=1e-4)
    # Scaling each rank's batch to its own size (num_data = N / W) would be off by the factor W.
    wrong = torch.stack([gradient(model, guide, x[r * b:(r + 1) * b], num_data=len(train) // world)
                         for r in range(world)]).mean(0)
    assert not torch.allclose(wrong, single, rtol=1e-2)
