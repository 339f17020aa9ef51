"""The batched engine: ground truth, the expert H, the "strictly easier" order, robustness."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amp_envs.reference import reference_answer
from amp_envs.tasks import TASKS, UNKNOWN, make_task

NAMES = sorted(TASKS)
RANDOM_LOOKUPS = {"neighbor", "out"}  # simple questions whose answer is a random pick


def questions_of_every_kind(task, ctx, rng, per_ctx: int):
    """Episode questions of every episode kind, plus every subquestion H asks about them."""
    idx = np.repeat(np.arange(len(ctx)), per_ctx)
    qs, ids = [], []
    for kind in task.episode_kinds:
        q = task.sample_questions(ctx, rng, (kind,), ctx_idx=idx)
        tr = task.run_expert(ctx, idx, q, rng)
        asked = np.arange(task.max_subquestions)[None, :] < tr.num_sub[:, None]
        qs += [q, tr.sub_questions[asked]]
        ids += [idx, np.repeat(idx, tr.num_sub)]
    return np.concatenate(qs), np.concatenate(ids)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [8, 16, 64])
def test_expert_with_true_subanswers_reproduces_ground_truth(name, size):
    task = make_task(name, size)
    rng = np.random.default_rng(size)
    ctx = task.generate(rng, 100)
    idx = np.repeat(np.arange(100), 20)
    for kind in task.episode_kinds:
        q = task.sample_questions(ctx, rng, (kind,), ctx_idx=idx)
        tr = task.run_expert(ctx, idx, q, rng)
        truth = task.ground_truth(ctx, idx, q)
        assert (truth != UNKNOWN).all()
        assert np.array_equal(tr.answers, truth), f"{kind}: {np.mean(tr.answers == truth):.3f} agree"
        assert tr.num_sub.max() <= task.max_subquestions


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [8, 64])
def test_ground_truth_matches_plain_python_reference(name, size):
    task = make_task(name, size)
    rng = np.random.default_rng(1)
    ctx = task.generate(rng, 12)
    q, idx = questions_of_every_kind(task, ctx, rng, per_ctx=6)
    kinds = np.array(task.kinds)[task.kind_of(q)]
    keep = ~np.isin(kinds, list(RANDOM_LOOKUPS))
    q, idx = q[keep], idx[keep]
    assert len(q) >= 100
    valid = task.is_valid(ctx, idx, q)
    simple = task.is_simple(q)
    engine = np.where(simple[:, None], task.lookup(ctx, idx, q, rng), task.ground_truth(ctx, idx, q))
    engine = np.where(valid[:, None], engine, UNKNOWN)[:, 0]
    reference = np.array([reference_answer(task, ctx.facts[i], qq) for i, qq in zip(idx, q, strict=True)])
    mismatch = np.flatnonzero(engine != reference)
    assert len(mismatch) == 0, [
        (task.render_question(q[i]), task.vocab.decode(engine[i]), task.vocab.decode(reference[i]))
        for i in mismatch[:5]
    ]


@pytest.mark.parametrize("name", NAMES)
def test_random_lookups_are_real_neighbours(name):
    task = make_task(name, 16)
    kinds = [k for k in task.kinds if k in RANDOM_LOOKUPS]
    if not kinds:
        pytest.skip("no random lookups in this task")
    rng = np.random.default_rng(2)
    ctx = task.generate(rng, 20)
    # ask "some neighbour of x" of every element and check each answer with the reference
    kind = kinds[0]
    check = "adjacent" if "adjacent" in task.kinds else "edge"
    seen = set()
    for c in range(len(ctx)):
        for name_token in ctx.names[c]:
            ask = task.question(task.vocab.sym(kind), np.array([name_token]))
            answer = int(task.lookup(ctx, np.array([c]), ask, rng)[0, 0])
            if answer == UNKNOWN:
                continue
            seen.add(answer)
            edge = task.question(task.vocab.sym(check), np.array([name_token]), np.array([answer]))
            assert reference_answer(task, ctx.facts[c], edge[0]) == task.vocab.sym("yes")
    assert len(seen) > 10


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [8, 64])
def test_every_hard_subquestion_of_a_main_question_is_strictly_easier(name, size):
    task = make_task(name, size)
    rng = np.random.default_rng(3)
    ctx = task.generate(rng, 50)
    idx = np.repeat(np.arange(50), 20)
    q = task.sample_questions(ctx, rng, ctx_idx=idx)
    tr = task.run_expert(ctx, idx, q, rng)
    key = task.easier_key(ctx, idx, q)
    for j in range(task.max_subquestions):
        rows = np.flatnonzero(tr.num_sub > j)
        sub = tr.sub_questions[rows, j]
        hard = ~task.is_simple(sub)
        assert task.is_valid(ctx, idx[rows], sub).all()
        sub_key = task.easier_key(ctx, idx[rows][hard], sub[hard])
        assert (sub_key < key[rows][hard]).all()


@pytest.mark.parametrize("name", NAMES)
def test_generation_is_seeded_and_names_are_fresh(name):
    task = make_task(name, 16)
    a = task.generate(np.random.default_rng(5), 30)
    b = task.generate(np.random.default_rng(5), 30)
    c = task.generate(np.random.default_rng(6), 30)
    for key, value in a.arrays().items():
        assert np.array_equal(value, b.arrays()[key]), key
    assert not np.array_equal(a.facts, c.facts)
    if task.vocab.num_names:
        # the first element is called differently from one episode to the next
        assert len(set(a.names[:, 0].tolist())) > 10


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [2, 3, 5, 13, 256])
def test_sizes_from_tiny_to_large(name, size):
    if size < TASKS[name].min_size:
        pytest.skip(f"{name} needs size >= {TASKS[name].min_size}")
    task = make_task(name, size)
    rng = np.random.default_rng(size)
    ctx = task.generate(rng, 8)
    assert ctx.facts.shape == (8, task.max_facts, task.fact_len)
    assert ctx.facts.min() >= 0 and ctx.facts.max() < len(task.vocab)
    idx = np.repeat(np.arange(8), 10)
    q = task.sample_questions(ctx, rng, ctx_idx=idx)
    assert np.array_equal(task.run_expert(ctx, idx, q, rng).answers, task.ground_truth(ctx, idx, q))


@pytest.mark.parametrize("name", NAMES)
def test_curriculum_sizes_share_one_vocabulary(name):
    small, large = make_task(name, 8, max_size=64), make_task(name, 64)
    assert len(small.vocab) == len(large.vocab)
    assert (small.max_facts, small.fact_len, small.question_len) == (
        large.max_facts,
        large.fact_len,
        large.question_len,
    )
    rng = np.random.default_rng(0)
    ctx = small.generate(rng, 20)
    idx = np.repeat(np.arange(20), 10)
    q = small.sample_questions(ctx, rng, ctx_idx=idx)
    assert np.array_equal(small.run_expert(ctx, idx, q, rng).answers, small.ground_truth(ctx, idx, q))


@pytest.mark.parametrize("name", NAMES)
def test_invalid_sizes_raise(name):
    for bad in (0, -3, 2.5, "8", True):
        with pytest.raises(ValueError, match="size"):
            make_task(name, bad)
    with pytest.raises(ValueError, match="max_size"):
        make_task(name, 16, max_size=8)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_garbage_tokens_never_crash(name, seed):
    task = make_task(name, 8)
    rng = np.random.default_rng(seed)
    ctx = task.generate(rng, 4)
    m = 64
    idx = rng.integers(0, 4, m)
    q = rng.integers(-5, len(task.vocab) + 5, (m, task.question_len))
    q[: m // 2, 0] = rng.choice(task.kind_tokens, m // 2)  # well-formed kinds, garbage arguments
    valid = task.is_valid(ctx, idx, q)
    truth = task.ground_truth(ctx, idx, q)
    assert truth.shape == (m, task.answer_len)
    assert (truth[~valid] == UNKNOWN).all()
    task.difficulty(ctx, idx, q)
    sub_answers = rng.integers(-5, len(task.vocab) + 5, (m, task.max_subquestions, task.answer_len))
    for n in range(task.max_subquestions + 1):
        done, next_q, final = task.expert_step(q, sub_answers, np.full(m, n))
        assert done.shape == (m,) and next_q.shape == (m, task.question_len)
        assert final.shape == (m, task.answer_len)
    answers = task.answer_subquestions(ctx, idx, q, rng)
    assert answers.min() >= 0 and answers.max() < len(task.vocab)


@pytest.mark.parametrize("name", NAMES)
def test_stepwise_expert_agrees_with_run_expert(name):
    """`expert_step` (the policy, replaying H from the transcript) and `run_expert` (one pass)
    must produce the same transcripts."""
    task = make_task(name, 16)
    ctx = task.generate(np.random.default_rng(4), 30)
    idx = np.repeat(np.arange(30), 10)
    q = task.sample_questions(ctx, np.random.default_rng(5), ctx_idx=idx)
    whole = task.run_expert(ctx, idx, q, np.random.default_rng(6))
    rng = np.random.default_rng(6)
    m, s = len(q), task.max_subquestions
    sub_q = np.zeros((m, s, task.question_len), np.int64)
    sub_a = np.zeros((m, s, task.answer_len), np.int64)
    n = np.zeros(m, np.int64)
    final = np.zeros((m, task.answer_len), np.int64)
    active = np.ones(m, bool)
    while active.any():
        done, next_q, answer = task.expert_step(q, sub_a, n)
        final[active & done] = answer[active & done]
        active &= ~done
        rows = np.flatnonzero(active)
        sub_q[rows, n[rows]] = next_q[rows]
        sub_a[rows, n[rows]] = task.answer_subquestions(ctx, idx[rows], next_q[rows], rng)
        n[rows] += 1
    assert np.array_equal(n, whole.num_sub)
    assert np.array_equal(final, whole.answers)
    assert np.array_equal(sub_q, whole.sub_questions)


def test_any_shortest_next_step_and_any_neighbour_is_correct():
    """Questions with several right answers: shortest path's step (any out-neighbour on a
    shortest path) and union find's neighbor (any neighbour), checked against the facts."""
    task = make_task("ShortestPath", 8)
    rng = np.random.default_rng(9)
    ctx = task.generate(rng, 20)
    v = task.vocab

    def reference_dist(c: int, a: int, b: int) -> int | None:
        if a == b:
            return 0
        token = reference_answer(
            task, ctx.facts[c], task.question(v.sym("dist"), np.array([a]), np.array([b]))[0]
        )
        value, is_number = v.number_value(token)
        return int(value) if is_number else None  # None: far

    checked = 0
    for c in range(len(ctx)):
        out: dict[int, list[int]] = {}
        for a, _, b in ctx.facts[c][ctx.facts[c, :, 0] != 0]:
            out.setdefault(int(a), []).append(int(b))
        for question in task.sample_questions(ctx, rng, ("step",), ctx_idx=np.full(10, c)):
            a, b = int(question[1]), int(question[2])
            d = reference_dist(c, a, b)
            if d is None:
                continue
            for nxt in out.get(a, []):
                expected = reference_dist(c, nxt, b) == d - 1
                assert task.correct(ctx, np.array([c]), question[None], np.array([[nxt]]))[0] == expected
                checked += 1
    assert checked > 50

    uf = make_task("UnionFind", 8)
    ctx = uf.generate(rng, 10)
    for c in range(len(ctx)):
        for x in ctx.names[c]:
            for y in ctx.names[c]:
                q = uf.question(uf.vocab.sym("neighbor"), np.array([x]))
                adjacent = uf.question(uf.vocab.sym("adjacent"), np.array([x]), np.array([y]))[0]
                expected = reference_answer(uf, ctx.facts[c], adjacent) == uf.vocab.sym("yes")
                assert uf.correct(ctx, np.array([c]), q, np.array([[y]]))[0] == expected


def test_successor_tokens_step_numbers_by_one():
    vocab = make_task("UnionFind", 8).vocab
    table = vocab.successor_tokens()
    values, is_number = vocab.number_value(np.arange(len(vocab)))
    top = vocab.number_hi
    for token in range(len(vocab)):
        if not is_number[token]:
            assert table[token] == 0  # PAD: nothing to point at
        elif values[token] == top:
            assert table[token] == 1  # `?`, as Vocab.number gives past the range
        else:
            assert vocab.number_value(table[token])[0] == values[token] + 1
