"""Sampling parameters on synthetic logits, without the model."""

import torch

from inference.sampler import apply_penalties, greedy, make_generator, sample, sample_row
from inference.sequence import Sequence
from inference.types import GenerationRequest, SamplingParams


def seq(**kw) -> Sequence:
    sp = SamplingParams(**kw)
    s = Sequence(request=GenerationRequest("x", [1], sp), prompt_ids=[1], max_tokens=10)
    s.generator = make_generator(sp.seed, torch.device("cpu"))
    return s


def test_greedy_vectorised():
    logits = torch.tensor([[0.0, 3.0, 1.0], [5.0, 0.0, 1.0]])
    res = sample(logits, [seq(temperature=0), seq(temperature=0)])
    assert [r.token_id for r in res] == [1, 0]


def test_greedy_from_exact_top_matches_full_argmax():
    torch.manual_seed(0)
    logits = torch.randn(6, 5000) * 4
    logits[2, [40, 7]] = 99.0  # a tie: the lowest id wins, as with torch.argmax
    top = logits.topk(16, dim=-1).indices
    assert greedy(logits, top) == greedy(logits, None) == torch.argmax(logits, -1).tolist()
    assert greedy(logits, top)[2] == 7
    # mixed batch: only the greedy rows read the candidates, in their own row order
    seqs = [seq(temperature=0), seq(temperature=1.0, seed=1), seq(temperature=0)]
    res = sample(logits[:3], seqs, top[:3])
    assert [res[0].token_id, res[2].token_id] == torch.argmax(logits[[0, 2]], -1).tolist()


def test_top_k_one_is_greedy():
    logits = torch.tensor([1.0, 2.0, 0.5, 1.9])
    for i in range(20):
        assert sample_row(logits, seq(temperature=1.0, top_k=1, seed=i)) == 1


def test_top_p_keeps_only_the_nucleus():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    seen = {sample_row(logits, seq(temperature=1.0, top_p=0.7, seed=i)) for i in range(200)}
    assert seen == {0, 1}


def test_seed_reproducible():
    logits = torch.randn(1000)
    a = [sample_row(logits, s) for s in [seq(temperature=1.0, seed=5)] for _ in range(10)]
    b = [sample_row(logits, s) for s in [seq(temperature=1.0, seed=5)] for _ in range(10)]
    assert a == b


def test_penalties():
    s = seq(temperature=0, frequency_penalty=1.0, presence_penalty=0.5)
    s.token_counts = {0: 3, 2: 1}
    out = apply_penalties(torch.tensor([10.0, 1.0, 5.0]), s)
    assert out.tolist() == [10.0 - 3.0 - 0.5, 1.0, 5.0 - 1.0 - 0.5]
    s2 = seq(temperature=0, frequency_penalty=2.0)
    s2.token_counts = {0: 5}
    assert sample(torch.tensor([[10.0, 1.0, 5.0]]), [s2])[0].token_id == 2


def test_logprobs_and_top_logprobs():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    r = sample(logits, [seq(temperature=0, logprobs=True, top_logprobs=2)])[0]
    lp = torch.log_softmax(logits[0], -1)
    assert r.token_id == 0
    assert abs(r.logprob - float(lp[0])) < 1e-6
    assert [t for t, _ in r.top] == [0, 1]
