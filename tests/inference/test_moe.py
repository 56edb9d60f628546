"""Mode-scaled experts: counts, grouping, router fit, the plan cache, and the routed FFN on a
tiny random Llama (the engine's real code paths, milliseconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.moe import FitConfig, experts_for
from inference.moe.cache import load_plan, save_plan
from inference.moe.experts import ExpertFFN
from inference.moe.fit import ffn_weights, fit_plan, fit_router, group_neurons
from inference.moe.forward import chunk_logits

from .moe_tiny import CFG, tiny_model, tiny_tensors

TINY_FIT = FitConfig(n_experts=4, rank=16, calib_tokens=128, chunk=64, kmeans_iters=10)


@pytest.fixture(scope="module")
def tiny():
    tensors = tiny_tensors()
    model = tiny_model(tensors)
    rng = np.random.default_rng(1)
    chunks = [rng.integers(0, CFG.vocab_size, 64).tolist() for _ in range(2)]
    plan = fit_plan(model, tensors, chunks, TINY_FIT)
    return model, tensors, plan, chunks


def test_experts_per_fraction():
    assert [experts_for(f, 48) for f in (0.35, 0.6, 0.92, 1.0)] == [17, 29, 44, 48]
    assert experts_for(0.001, 48) == 1
    assert experts_for(1.0, 4) == 4


def test_grouping_recovers_planted_groups_and_is_balanced():
    # 4 groups of 8 neurons; each token excites one group
    gen = torch.Generator().manual_seed(3)
    truth = torch.randperm(32, generator=gen).view(4, 8)
    tokens = torch.randint(0, 4, (400,), generator=gen)
    imp = torch.rand(400, 32, generator=gen) * 0.05
    for g in range(4):
        imp[tokens == g][:, truth[g]] += 1.0
        rows = torch.nonzero(tokens == g).flatten()
        imp[rows[:, None], truth[g][None, :]] += 1.0
    groups = group_neurons(imp, 4, iters=10, seed=0)
    assert groups.shape == (4, 8)
    assert sorted(groups.flatten().tolist()) == list(range(32))
    found = {frozenset(g.tolist()) for g in groups}
    assert found == {frozenset(g.tolist()) for g in truth}
    assert np.array_equal(groups, group_neurons(imp, 4, iters=10, seed=0))


def test_router_at_full_rank_is_the_exact_map():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(24, 8, generator=gen, dtype=torch.float64).float()
    h = torch.randn(200, 8, generator=gen)
    a, b = fit_router(w, h, torch.rand(24, generator=gen) + 0.5, rank=8)
    pred = h @ torch.from_numpy(a) @ torch.from_numpy(b)
    torch.testing.assert_close(pred, h @ w.t(), atol=1e-4, rtol=1e-4)


def test_fit_is_deterministic_and_the_cache_round_trips(tiny, tmp_path):
    model, tensors, plan, chunks = tiny
    again = fit_plan(model, tensors, chunks, TINY_FIT)
    for name in ("experts", "router_a", "router_b", "down_norm"):
        assert np.array_equal(getattr(plan, name), getattr(again, name)), name
    sha = "ab" * 32
    path = save_plan(plan, sha, TINY_FIT.key(), tmp_path)
    assert path is not None and path.parent == tmp_path and sha in path.name
    back = load_plan(sha, TINY_FIT.key(), tmp_path)
    assert back is not None
    for name in ("experts", "router_a", "router_b", "down_norm"):
        assert np.array_equal(getattr(plan, name), getattr(back, name)), name
    assert load_plan("cd" * 32, TINY_FIT.key(), tmp_path) is None  # another artifact
    assert load_plan(sha, FitConfig(rank=8).key(), tmp_path) is None  # another fit


def test_torn_cache_file_is_ignored(tmp_path):
    sha = "ef" * 32
    (tmp_path / f"{sha}-{TINY_FIT.key()}.npz").write_bytes(b"not a zip")
    assert load_plan(sha, TINY_FIT.key(), tmp_path) is None


def test_all_experts_equal_the_dense_model(tiny):
    model, tensors, plan, chunks = tiny
    ex = ExpertFFN(model, plan, tensors)
    ids = chunks[0][:20]
    dense = chunk_logits(model, ids)
    k = torch.full((len(ids),), ex.n_experts, dtype=torch.long)
    assert torch.equal(chunk_logits(model, ids, ex.route(k)), dense)
    one = chunk_logits(model, ids[:3])  # few rows: the int4 path
    assert torch.equal(chunk_logits(model, ids[:3], ex.route(k[:3])), one)


def test_each_row_keeps_its_own_expert_count(tiny):
    model, tensors, plan, _ = tiny
    ex = ExpertFFN(model, plan, tensors)
    h = torch.randn(5, CFG.dim).to(model.dtype)
    k = torch.tensor([1, 2, 3, 4, 2])
    mask = ex.select(0, h, k)
    assert mask.sum(dim=1).tolist() == k.tolist()
    # the rows' top experts by the router's scores
    top1 = ex.scores(0, h).float().argmax(dim=1)
    assert bool(mask[torch.arange(5), top1].all())


def test_gathered_experts_match_masked_dense(tiny):
    model, tensors, plan, _ = tiny
    ex = ExpertFFN(model, plan, tensors)
    if not ex.int4:
        pytest.skip("no int4 kernel for few rows on this CPU/dtype")
    h = torch.randn(3, CFG.dim).to(model.dtype)
    mask = ex.select(1, h, torch.tensor([1, 2, 3]))
    got = ex.gathered(1, h, mask).float()
    want = ex.masked_dense(1, h, mask).float()
    torch.testing.assert_close(got, want, atol=0.05 * want.abs().max().item(), rtol=0.02)


def test_mixed_fractions_in_one_batch_match_each_row_alone(tiny):
    model, tensors, plan, _ = tiny
    ex = ExpertFFN(model, plan, tensors)
    h = torch.randn(4, CFG.dim).to(model.dtype)
    k = torch.tensor([1, 4, 2, 3])  # row 1 dense
    together = ex.route(k)(0, h)
    for r in range(4):
        alone = ex.route(k[r : r + 1])(0, h[r : r + 1])
        assert torch.equal(together[r : r + 1], alone), r
    many = torch.randn(9, CFG.dim).to(model.dtype)  # more rows than the int4 path takes
    km = torch.tensor([1, 2, 3, 4, 1, 2, 3, 4, 2])
    together = ex.route(km)(1, many)
    # the same rows in another order next to other fractions (a row's kernels depend on the
    # batch size, as in the dense engine, not on its neighbours)
    perm = torch.tensor([8, 3, 0, 5, 6, 7, 1, 2, 4])
    others = km[perm].clone()
    others[3:] = 4 - others[3:] + 1
    shuffled = ex.route(others)(1, many[perm])
    for i in range(3):
        assert torch.equal(shuffled[i], together[perm[i]]), i


def test_plan_must_fit_the_model(tiny):
    model, tensors, plan, _ = tiny
    bad = type(plan)(plan.experts[:1], plan.router_a[:1], plan.router_b[:1], plan.down_norm[:1])
    with pytest.raises(ValueError, match="does not fit"):
        ExpertFFN(model, bad, tensors)


def test_ffn_weights_shapes(tiny):
    _, tensors, _, _ = tiny
    gu, down = ffn_weights(tensors, 0)
    assert gu.shape == (2 * CFG.ffn_dim, CFG.dim) and down.shape == (CFG.dim, CFG.ffn_dim)


def test_mode_defaults():
    from inference.moe import MODE_EXPERT_FRACTIONS, TARGET_EXPERT_FRACTIONS, expert_fraction_for_mode

    assert set(MODE_EXPERT_FRACTIONS) == {"non-think", "think-high", "think-max"}
    assert expert_fraction_for_mode("THINK_MAX") == MODE_EXPERT_FRACTIONS["think-max"]
    assert expert_fraction_for_mode("non-think", TARGET_EXPERT_FRACTIONS) == 0.35
    assert expert_fraction_for_mode("unknown") is None
    for f in TARGET_EXPERT_FRACTIONS.values():
        assert 0.0 < f <= 1.0
