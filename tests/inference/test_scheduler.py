"""Scheduler with continuous batching, chunked prefill and preemption, without the model."""

from inference.block_manager import BlockManager
from inference.scheduler import Scheduler
from inference.sequence import SeqStatus, Sequence
from inference.types import GenerationRequest, SamplingParams


def mkseq(rid: str, n: int, max_tokens: int = 8, salt: bytes = b"") -> Sequence:
    ids = [(hash(rid) + i) % 1000 for i in range(n)]
    return Sequence(
        request=GenerationRequest(rid, ids, SamplingParams(), cache_salt=salt),
        prompt_ids=ids,
        max_tokens=max_tokens,
    )


def fake_step(s: Scheduler) -> list:
    """Schedule, pretend the model ran, append one token to every sampled sequence."""
    out = s.schedule()
    s.step_done(out)
    for sch in out.items:
        if sch.sample:
            seq = sch.seq
            seq.output_ids.append(7)
            if len(seq.output_ids) >= seq.max_tokens:
                s.finish(seq, "length")
    return out


def test_chunked_prefill_under_budget():
    s = Scheduler(BlockManager(64, 4), max_num_seqs=8, max_num_batched_tokens=10)
    a = mkseq("a", 25)
    s.add(a)
    out = s.schedule()
    assert [(x.seq, x.num_tokens, x.sample) for x in out.prefills] == [(a, 10, False)]
    s.step_done(out)
    out = s.schedule()
    assert out.prefills[0].num_tokens == 10 and not out.prefills[0].sample
    s.step_done(out)
    out = s.schedule()
    assert out.prefills[0].num_tokens == 5 and out.prefills[0].sample


def test_decode_and_prefill_share_a_step_and_new_requests_join():
    s = Scheduler(BlockManager(64, 4), max_num_seqs=8, max_num_batched_tokens=16)
    a = mkseq("a", 5)
    s.add(a)
    fake_step(s)  # a prefilled, sampled one token
    b = mkseq("b", 30)
    s.add(b)
    out = fake_step(s)
    assert [x.seq for x in out.decodes] == [a]
    assert out.prefills[0].seq is b and out.prefills[0].num_tokens == 15  # budget 16 - 1
    assert out.num_tokens == 16


def test_max_num_seqs_limits_admission():
    s = Scheduler(BlockManager(64, 4), max_num_seqs=2, max_num_batched_tokens=100)
    seqs = [mkseq(str(i), 3) for i in range(4)]
    for q in seqs:
        s.add(q)
    out = s.schedule()
    assert len(out.items) == 2 and len(s.waiting) == 2


def test_preemption_when_blocks_run_out_and_everyone_finishes():
    bm = BlockManager(6, 4)  # 24 token slots
    s = Scheduler(bm, max_num_seqs=8, max_num_batched_tokens=64)
    seqs = [mkseq(str(i), 6, max_tokens=10) for i in range(3)]  # 16 tokens each at the end
    for q in seqs:
        s.add(q)
    for _ in range(200):
        if not s.has_work():
            break
        fake_step(s)
        bm.check_invariants()
    assert not s.has_work()
    assert all(q.status is SeqStatus.FINISHED and len(q.output_ids) == 10 for q in seqs)
    assert s.num_preemptions > 0
    assert bm.num_free_blocks == 6


def test_request_larger_than_cache_is_ended_not_hung():
    bm = BlockManager(2, 4)
    s = Scheduler(bm, max_num_seqs=8, max_num_batched_tokens=64)
    big = mkseq("big", 12)
    s.add(big)
    out = s.schedule()
    assert big in out.finished and big.finish_reason == "length"
    assert not s.has_work()


def test_prefix_hit_recorded_once_and_finish_frees_blocks():
    bm = BlockManager(32, 4)
    s = Scheduler(bm, max_num_seqs=8, max_num_batched_tokens=64)
    a = mkseq("same", 10, max_tokens=1)
    s.add(a)
    fake_step(s)
    assert a.prompt_cache_hit_tokens == 0 and a.status is SeqStatus.FINISHED
    b = mkseq("same", 10, max_tokens=1)
    s.add(b)
    out = s.schedule()
    assert b.prompt_cache_hit_tokens == 8
    assert out.items[0].num_tokens == 2
    s.finish(b, "cancelled")
    assert bm.num_free_blocks == 32
