"""Shortest path.

Context: a random directed graph on `size` vertices with min(2 * size, size * (size - 1)) distinct
edges and no self-loops (uniform over such graphs), as facts `a -> b`. The episode's vertices are
the ones its facts name: a vertex without edges (about e^-4 of them) cannot be seen, so its name
counts as not in the episode (questions naming it are malformed and never asked). Distances are
precomputed for all pairs (a BFS from every source at once, on bitsets); "far" (unreachable, or
further than max_distance) is stored as max_distance + 1.
Question kinds, in `kinds` order:
  * `step a b` (auxiliary episode kind): the next vertex on a shortest path from a to b; ties go to
    the smallest name token among the optimal out-neighbours; `far` if dist(a, b) is far. Any
    optimal out-neighbour is accepted as correct (see `correct`).
  * `dist a b` (main): the length of a shortest path from a to b, a number 1..max_distance, or
    `far` when b is unreachable or further than max_distance.
  * `edge a b` (simple): `yes` if a -> b is a fact, else `no`.
  * `out a` (simple): a uniformly random out-neighbour of a; `?` if a has none.
A question with a == b is malformed for dist and step (it is allowed for edge: the answer is `no`).
Difficulty class: dist(a, b) for dist, step and edge (far counts as max_distance + 1, a == b as 0);
0 for out.
Strictly easier (`easier_key` = difficulty * 4 + kind index): for dist(a, b) at distance d, H's
non-simple subquestions are step(a, b) (same class, kind 0 < 1) and dist(c, b) with c the next
step (class d - 1). For step questions H asks step(a, b) again (the same key) and dist(c, b) for a
random out-neighbour c, which may be further from b: the order only holds for the main kind.
H, for dist(a, b): e = edge(a, b); `yes` -> 1. Else c = step(a, b); `far` -> `far`. Else d =
dist(c, b); a number -> d + 1 (`far` above max_distance); `far` -> `far`; anything else `?`.
H, for step(a, b): e = edge(a, b); `yes` -> b. Else c1 = step(a, b), checked by edge(a, c1); c2 =
step(a, b) asked again (a sampled answerer can differ), checked by edge(a, c2); c3 = out(a). It asks
dist(c, b) of every valid candidate and answers the one with the smallest d such that d + 1 <=
max_distance (ties: earliest of c1, c2, c3); if there is none, `far` when every valid candidate was
`far` or d + 1 > max_distance (or there was no valid candidate: a has no out-edges), else `?`.
If edge(a, b) is answered neither `yes` nor `no`, or a == b, the question is malformed: `?`.
At most 9 subquestions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from amp_envs.tasks.base import (
    PAD,
    UNKNOWN,
    Contexts,
    ExpertProgram,
    Task,
    Vocab,
    question_rows,
    randint_below,
)

STEP, DIST, EDGE, OUT = range(4)  # indices into ShortestPath.kinds

# _SPREAD[x]: byte t is bit t of x (x < 256); _SPREAD2[x | y << 8] = _SPREAD[x] | _SPREAD[y] << 1
_SPREAD = np.zeros(256, dtype="<u8")
for _t in range(8):
    _SPREAD |= ((np.arange(256, dtype="<u8") >> np.uint64(_t)) & np.uint64(1)) << np.uint64(8 * _t)
_SPREAD2 = (_SPREAD[None, :] | (_SPREAD[:, None] << np.uint64(1))).ravel()


def _count_per_row(index: np.ndarray, n: int) -> np.ndarray:
    """(B, n) how often each value in range(n) occurs in each row of index (B, K)."""
    batch = len(index)
    return np.bincount((np.arange(batch)[:, None] * n + index).ravel(), minlength=batch * n).reshape(batch, n)


class ShortestPath(Task):
    name = "ShortestPath"
    kinds = ("step", "dist", "edge", "out")
    main_kinds = ("dist",)
    simple_kinds = ("edge", "out")
    fact_len = 3
    question_len = 3
    max_subquestions = 9

    def __init__(self, size: int = 64, max_size: int | None = None, max_distance: int = 16) -> None:
        super().__init__(size, max_size)
        if (
            isinstance(max_distance, bool)
            or not isinstance(max_distance, (int, np.integer))
            or max_distance < 1
        ):
            raise ValueError(f"max_distance must be an integer >= 1, got {max_distance!r}")
        self.max_distance = md = int(max_distance)
        self.num_difficulties = md + 2
        self.vocab = Vocab(["step", "dist", "edge", "out", "->", "yes", "no", "far"], (0, md), self.max_size)
        v = self.vocab
        self.tok_step, self.tok_dist, self.tok_edge, self.tok_out = (v.sym(k) for k in self.kinds)
        assert self.tok_out - self.tok_step == len(self.kinds) - 1  # kind_of is a subtraction
        self.arrow, self.yes, self.no, self.far = v.sym("->"), v.sym("yes"), v.sym("no"), v.sym("far")
        self.max_facts = 2 * self.max_size
        self.num_edges = min(2 * self.size, self.size * (self.size - 1))
        self.dist_dtype = np.int8 if md <= 126 else np.int16 if md <= 32766 else np.int32

    # -- encoding ---------------------------------------------------------------------------
    def encode(
        self, kind_token: np.ndarray | int, a: np.ndarray | int, b: np.ndarray | int = PAD
    ) -> np.ndarray:
        """(M, 3) questions `kind a b` (b is PAD for `out`)."""
        return self.question(kind_token, a, b)

    def _distance_token(self, d: np.ndarray) -> np.ndarray:
        """Answer token of a stored distance (far above max_distance)."""
        d = d.astype(np.int64)
        return np.where(d > self.max_distance, self.far, self.vocab.number_base + d)

    def kind_of(self, questions: np.ndarray) -> np.ndarray:
        """(M,) index into `kinds` of each question's first token, -1 if it is no kind. The kinds
        are the first symbols, so this is a subtraction (same result as `Task.kind_of`)."""
        k = np.asarray(questions)[:, 0] - self.tok_step
        return np.where((k >= 0) & (k < len(self.kinds)), k, -1)

    def is_simple(self, questions: np.ndarray) -> np.ndarray:
        return self.kind_of(questions) >= EDGE

    def _args(
        self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(kind, a, b, valid): kind index, element indices of the arguments (-1 if none), validity."""
        q = np.asarray(questions, dtype=np.int64)
        kind = self.kind_of(q)
        j = q[:, 1:3] - self.vocab.name_base
        named = j.view(np.uint64) < self.vocab.num_names  # negative j wraps around: not named
        table = ctx.name_index
        j[~named] = 0
        j += ctx_idx[:, None] * table.shape[1]
        ab = np.take(table.reshape(-1), j)
        ab[~named] = -1
        a, b = ab[:, 0], ab[:, 1]
        two = (b >= 0) & ((a != b) | (kind == EDGE))
        valid = (kind >= 0) & (a >= 0) & np.where(kind == OUT, q[:, 2] == PAD, two)
        return kind, a, b, valid

    def _dist(self, ctx: Contexts, ctx_idx: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Stored distance (far = max_distance + 1) from a to b; a, b must be valid indices."""
        table = ctx.data["dist"]
        n = table.shape[1]
        return np.take(table.reshape(-1), (ctx_idx * n + a) * n + b)

    # -- context ----------------------------------------------------------------------------
    def _random_edges(self, rng: np.random.Generator, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """(src, dst) (B, E): a uniform set of E distinct ordered pairs without self-loops per row."""
        n, e = self.size, self.num_edges
        pairs = n * (n - 1)
        if pairs <= 8 * e:  # dense: random keys over all pairs
            if e == pairs:
                pick = np.broadcast_to(np.arange(pairs), (batch, pairs))
            else:
                pick = np.argpartition(rng.random((batch, pairs)), e - 1, axis=1)[:, :e]
        else:  # sparse: draw with replacement, keep the first e distinct draws (a uniform e-subset)
            draws = e + 3 * e * e // pairs + 16
            pick = np.empty((batch, e), dtype=np.int64)
            todo = np.arange(batch)
            while len(todo):
                vals = rng.integers(0, pairs, size=(len(todo), draws))
                code = np.sort(vals * draws + np.arange(draws), axis=1)  # (value, draw position)
                r, c = np.nonzero(code[:, 1:] // draws == code[:, :-1] // draws)
                first = np.ones(vals.shape, dtype=bool)
                first[r, code[r, c + 1] % draws] = False  # a repeat of an earlier draw
                keep = first & (np.cumsum(first, axis=1) <= e)
                enough = keep.sum(axis=1) == e
                pick[todo[enough]] = vals[enough][keep[enough]].reshape(-1, e)
                todo = todo[~enough]
        src = pick // (n - 1)
        r = pick % (n - 1)
        return src, r + (r >= src)

    def _distances(self, dst: np.ndarray, degree: np.ndarray) -> np.ndarray:
        """All-pairs distances (B, N, N), far = max_distance + 1: a BFS from every source at once.

        dst (B, E): edge targets grouped by source; degree (B, N). reach[s] is the bitset of the
        vertices within k steps of s (the B * N sources of the batch are rows, sorted by out-degree
        so that the sources with a j-th out-edge are a suffix); a level ORs in the sets of the
        out-neighbours. The distance is kept bit-sliced: plane i holds the pairs whose distance has
        bit i set, so the (B, N, N) table is unpacked only once, at the end.
        """
        batch, n = degree.shape
        md = self.max_distance
        words = (n + 63) // 64
        deg = degree.ravel()
        order = np.argsort(deg, kind="stable")
        pos = np.empty_like(order)
        pos[order] = np.arange(len(order))
        first = (np.cumsum(deg) - deg)[order]
        targets = pos[(np.arange(batch)[:, None] * n + dst).ravel()]
        suffix = np.searchsorted(deg[order], np.arange(int(deg.max(initial=0))), side="right")
        nbr = [targets[first[lo:] + j] for j, lo in enumerate(suffix)]
        reach = np.zeros((batch * n, words), dtype="<u8")
        s = order % n
        reach[np.arange(batch * n), s // 64] = np.left_shift(np.uint64(1), (s % 64).astype(np.uint64))
        planes = [np.zeros_like(reach) for _ in range(int(md + 1).bit_length())]
        for k in range(1, min(md, n - 1) + 1):
            new = reach.copy()
            for lo, idx in zip(suffix, nbr, strict=True):
                new[lo:] |= np.take(reach, idx, axis=0)
            fresh = new & ~reach
            if not fresh.any():
                break
            for i, plane in enumerate(planes):
                if (k >> i) & 1:
                    plane |= fresh
            reach = new
        for i, plane in enumerate(planes):
            if ((md + 1) >> i) & 1:
                plane |= ~reach
        planes = [np.take(plane, pos, axis=0) for plane in planes]  # back to (context, vertex) order
        if len(planes) > 7:  # distances do not fit int8: the plain way
            dist = np.zeros((batch, n, n), dtype=self.dist_dtype)
            for i, plane in enumerate(planes):
                bits = np.unpackbits(
                    plane.reshape(batch, n, words).view(np.uint8), axis=2, count=n, bitorder="little"
                )
                dist |= bits.astype(self.dist_dtype) << i
            return dist
        # two planes at a time: a 16-bit table maps (byte of plane i, byte of plane i + 1) to 8 bytes
        # holding the bits i and i + 1 of 8 consecutive distances
        acc = np.zeros((batch * n, words * 8), dtype="<u8")
        for i in range(0, len(planes), 2):
            index = planes[i].view(np.uint8).astype(np.uint16)
            if i + 1 < len(planes):
                index |= planes[i + 1].view(np.uint8).astype(np.uint16) << np.uint16(8)
            acc |= np.take(_SPREAD2, index) << np.uint64(i)
        dist = acc.view(np.int8).reshape(batch, n, words * 64)
        return dist if n == words * 64 else np.ascontiguousarray(dist[:, :, :n])

    def generate(self, rng: np.random.Generator, batch: int) -> Contexts:
        n, e = self.size, self.num_edges
        src, dst = self._random_edges(rng, batch)
        names, name_index = self.make_names(rng, batch)
        # edges sorted by (source, name of target): each out-list is in name order (the step tie-break)
        key = np.sort(src * self.vocab.size + np.take_along_axis(names, dst, axis=1), axis=1)
        src, dst_names = key // self.vocab.size, key % self.vocab.size
        dst = np.take_along_axis(name_index, dst_names - self.vocab.name_base, axis=1)
        degree = _count_per_row(src, n)
        dist = self._distances(dst, degree)
        # The episode's vertices are those its facts name: a vertex without edges (probability about
        # e^-4 at 2 edges per vertex) is unobservable, so its name counts as not in the episode.
        present = (degree > 0) | (_count_per_row(dst, n) > 0)
        hidden = np.nonzero(~present)
        name_index[hidden[0], names[hidden] - self.vocab.name_base] = -1
        rows = np.empty((batch, e, 3), dtype=np.int64)
        rows[:, :, 0] = np.take_along_axis(names, src, axis=1)
        rows[:, :, 1] = self.arrow
        rows[:, :, 2] = dst_names
        facts = self.pack_facts(rng, rows, np.ones((batch, e), dtype=bool))
        start = np.cumsum(degree, axis=1) - degree
        data = {"dist": dist, "out_dst": dst, "out_start": start, "degree": degree, "present": present}
        return Contexts(facts, names, name_index, data)

    def sample_questions(
        self,
        ctx: Contexts,
        rng: np.random.Generator,
        kinds: Sequence[str] | None = None,
        ctx_idx: np.ndarray | None = None,
    ) -> np.ndarray:
        kinds = self.check_kinds(kinds)
        idx = question_rows(ctx, ctx_idx)
        b = len(idx)
        n = ctx.names.shape[1]
        tokens = np.array([self.vocab.sym(k) for k in kinds])
        kind = tokens[rng.integers(0, len(kinds), size=b)]
        # a != b, both uniform among the vertices the facts name (there are always two or more)
        present = ctx.data["present"][idx]
        x = np.argmin(np.where(present, rng.random((b, n)), 2.0), axis=1)
        rows = np.arange(b)
        other = present.copy()
        other[rows, x] = False
        y = np.argmin(np.where(other, rng.random((b, n)), 2.0), axis=1)
        return self.encode(kind, ctx.names[idx, x], ctx.names[idx, y])

    # -- answers ----------------------------------------------------------------------------
    def is_valid(self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray) -> np.ndarray:
        return self._args(ctx, ctx_idx, questions)[3]

    def _first_step(
        self, ctx: Contexts, ctx_idx: np.ndarray, a: np.ndarray, b: np.ndarray, dab: np.ndarray
    ) -> np.ndarray:
        """Element index of the smallest-named out-neighbour c of a with D[c, b] = D[a, b] - 1
        (a, b valid, a != b, D[a, b] not far)."""
        deg = ctx.data["degree"][ctx_idx, a]
        width = max(int(deg.max(initial=0)), 1)
        out_dst = ctx.data["out_dst"]
        e = out_dst.shape[1]
        j = np.arange(width)
        pos = ctx.data["out_start"][ctx_idx, a][:, None] + j
        c = np.take(out_dst.reshape(-1), ctx_idx[:, None] * e + np.minimum(pos, e - 1))
        best = (j < deg[:, None]) & (self._dist(ctx, ctx_idx[:, None], c, b[:, None]) == (dab - 1)[:, None])
        return c[np.arange(len(c)), np.argmax(best, axis=1)]

    def ground_truth(self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray) -> np.ndarray:
        kind, a, b, valid = self._args(ctx, ctx_idx, questions)
        a0, b0 = np.maximum(a, 0), np.maximum(b, 0)
        d = self._dist(ctx, ctx_idx, a0, b0)
        out = np.full(len(kind), UNKNOWN, dtype=np.int64)
        out = np.where(valid & (kind == DIST), self._distance_token(d), out)
        out = np.where(valid & (kind == EDGE), np.where(d == 1, self.yes, self.no), out)
        step = valid & (kind == STEP)
        out[step & (d > self.max_distance)] = self.far
        near = np.flatnonzero(step & (d <= self.max_distance))
        if len(near):
            c = self._first_step(ctx, ctx_idx[near], a[near], b[near], d[near])
            out[near] = self.name_of(ctx, ctx_idx[near], c)
        outq = np.flatnonzero(valid & (kind == OUT))
        if len(outq):  # a representative answer: the smallest-named out-neighbour
            i, x = ctx_idx[outq], a[outq]
            has = ctx.data["degree"][i, x] > 0
            first = np.minimum(ctx.data["out_start"][i, x], ctx.data["out_dst"].shape[1] - 1)
            c = ctx.data["out_dst"][i, first]
            out[outq] = np.where(has, self.name_of(ctx, i, c), UNKNOWN)
        return out[:, None]

    def lookup(
        self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        kind, a, b, valid = self._args(ctx, ctx_idx, questions)
        a0, b0 = np.maximum(a, 0), np.maximum(b, 0)
        edge = np.where(self._dist(ctx, ctx_idx, a0, b0) == 1, self.yes, self.no)
        out = np.where(valid & (kind == EDGE), edge, UNKNOWN)
        deg = ctx.data["degree"][ctx_idx, a0]
        e = ctx.data["out_dst"].shape[1]
        pos = np.minimum(ctx.data["out_start"][ctx_idx, a0] + randint_below(rng, np.maximum(deg, 1)), e - 1)
        c = ctx.data["out_dst"][ctx_idx, pos]
        out = np.where(valid & (kind == OUT) & (deg > 0), self.name_of(ctx, ctx_idx, c), out)
        return out[:, None]

    def difficulty(self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray) -> np.ndarray:
        kind, a, b, valid = self._args(ctx, ctx_idx, questions)
        d = self._dist(ctx, ctx_idx, np.maximum(a, 0), np.maximum(b, 0)).astype(np.int64)
        return np.where(valid & (kind != OUT), d, 0)

    def correct(
        self,
        ctx: Contexts,
        ctx_idx: np.ndarray,
        questions: np.ndarray,
        answers: np.ndarray,
        truth: np.ndarray | None = None,
    ) -> np.ndarray:
        """Exact match (against `truth` if given), except that step accepts any optimal next vertex
        and out any out-neighbour."""
        ok = super().correct(ctx, ctx_idx, questions, answers, truth)
        ans = np.asarray(answers)[:, 0]
        kind = self.kind_of(questions)
        more = np.flatnonzero((kind == STEP) | (kind == OUT))  # the kinds with several right answers
        if len(more) == 0:
            return ok
        i, ans = ctx_idx[more], ans[more]
        kind, a, b, valid = self._args(ctx, i, questions[more])
        a0, b0 = np.maximum(a, 0), np.maximum(b, 0)
        c = self.element(ctx, i, ans)
        c0 = np.maximum(c, 0)
        is_nbr = (c >= 0) & (self._dist(ctx, i, a0, c0) == 1)
        dab = self._dist(ctx, i, a0, b0)
        optimal = is_nbr & (dab <= self.max_distance) & (self._dist(ctx, i, c0, b0) == dab - 1)
        ok[more] |= valid & np.where(kind == STEP, optimal, is_nbr)
        return ok

    # -- the expert H -------------------------------------------------------------------------
    def expert(self, questions: np.ndarray) -> ExpertProgram:
        m = len(questions)
        v, md = self.vocab, self.max_distance
        kind = self.kind_of(questions)
        a, b = questions[:, 1], questions[:, 2]
        is_dist, is_step = kind == DIST, kind == STEP
        program = is_dist | is_step
        # A simple (or malformed) question is asked as it stands: the environment answers it.
        first = np.where(program[:, None], self.encode(self.tok_edge, a, b), questions)
        e = (yield np.ones(m, dtype=bool), first)[:, 0]
        formed = program & (a != b) & ((e == self.yes) | (e == self.no))
        final = np.where(program, UNKNOWN, e)
        final = np.where(formed & (e == self.yes), np.where(is_dist, v.number(1), b), final)
        go = formed & (e == self.no)
        if not go.any():
            return final[:, None]
        c1 = (yield go, self.encode(self.tok_step, a, b))[:, 0]
        go_dist, go_step = go & is_dist, go & is_step
        c1_far = c1 == self.far
        second = self.encode(self.tok_dist, c1, b)
        if go_step.any():
            second = np.where(is_dist[:, None], second, self.encode(self.tok_edge, a, c1))
        r = (yield (go_dist & ~c1_far) | go_step, second)[:, 0]
        d, is_num = v.number_value(r)
        far = np.where(is_num | (r == self.far), self.far, UNKNOWN)
        via = np.where(is_num & (d + 1 <= md), v.number(d + 1), far)
        final = np.where(go_dist, np.where(c1_far, self.far, via), final)
        if not go_step.any():
            return final[:, None]
        ok1 = go_step & (r == self.yes)
        c2 = (yield go_step, self.encode(self.tok_step, a, b))[:, 0]
        ok2 = go_step & ((yield go_step, self.encode(self.tok_edge, a, c2))[:, 0] == self.yes)
        c3 = (yield go_step, self.encode(self.tok_out, a))[:, 0]
        ok3 = go_step & v.is_name(c3)
        cands = np.stack([c1, c2, c3], axis=1)
        valid = np.stack([ok1, ok2, ok3], axis=1)
        dists = np.empty((m, 3), dtype=np.int64)
        for i in range(3):
            dists[:, i] = (yield valid[:, i], self.encode(self.tok_dist, cands[:, i], b))[:, 0]
        d, is_num = v.number_value(dists)
        good = valid & is_num & (d + 1 <= md)
        far_ish = ~valid | (is_num & (d + 1 > md)) | (dists == self.far)
        pick = np.argmin(np.where(good, d, np.iinfo(np.int64).max), axis=1)
        best = cands[np.arange(m), pick]
        answer = np.where(good.any(axis=1), best, np.where(far_ish.all(axis=1), self.far, UNKNOWN))
        return np.where(go_step, answer, final)[:, None]

    # -- rendering ----------------------------------------------------------------------------
    def render_fact(self, fact: np.ndarray) -> str:
        if fact[0] == PAD:
            return ""
        return f"{self.vocab.decode(fact[0])} -> {self.vocab.decode(fact[2])}"

    def render_question(self, question: np.ndarray) -> str:
        kind = int(self.kind_of(np.asarray(question)[None, :])[0])
        x, y = self.vocab.decode(question[1]), self.vocab.decode(question[2])
        if kind == DIST:
            return f"dist({x}, {y}) = ?"
        if kind == STEP:
            return f"next step from {x} toward {y} = ?"
        if kind == EDGE:
            return f"{x} -> {y} ?"
        if kind == OUT:
            return f"some out-neighbour of {x} = ?"
        return f"(malformed: {self.vocab.decode_seq(question)})"
