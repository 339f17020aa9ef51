"""Union find.

Context: `size` variables split into C = round(sqrt(size)) nonempty classes (a random partition).
Each class is a random recursive tree (in the class's random order, node j > 0 hangs below a
uniformly random earlier node of its class; node 0 is the root). Facts: `x = V` for each root (its
value, one of max(2, ceil(sqrt(size))) value tokens drawn per context from a pool of
max(2, ceil(sqrt(max_size)))) and `x ~ y` for each tree edge, in a random orientation.
Question kinds, in `kinds` order (the tie-break of the "strictly easier" order):
  * `parent x` (auxiliary): x's parent toward the root; a root is its own parent. Episode
    questions of this kind ask about a uniformly random non-root (a root is answered after one
    lookup, so it teaches nothing).
  * `depth x` (auxiliary): x's depth in its tree (root 0), as a number token.
  * `value x` (main): the value of x's root. Episode questions draw x uniformly.
  * `given x` (simple): x's value if x is a root, else `no`.
  * `neighbor x` (simple): a uniformly random tree neighbour of x (`?` if x has none). Its ground
    truth is one fixed neighbour (x's parent, or a root's first child); `correct` accepts any.
  * `adjacent x y` (simple): `yes` if `x ~ y` is a fact, else `no`.
Difficulty class: the depth of the question's first argument (num_difficulties = max_size).
Strictly easier (key = depth * 6 + kind index): for `value x` and `depth x` at depth d >= 1, H asks
`parent x` (key 6d + 0, below 6d + 1 and 6d + 2) and then `value p` / `depth p` at depth d - 1, so
every subquestion of a main (and of a depth) question is strictly easier. `parent x` is not
covered: H re-asks `parent x` itself (same key) and may ask the depth of a child (depth d + 1).
H:
  * value x: g = given x; if g is a value, answer g; else p = parent x, answer value p.
  * depth x: g = given x; if g is a value, answer 0; else p = parent x, answer depth p + 1.
  * parent x: g = given x; if g is a value, answer x. Else c1 = parent x, ok1 = adjacent x c1,
    c2 = parent x (asked again on purpose: a sampled answerer may guess differently),
    ok2 = adjacent x c2, c3 = neighbor x; ask depth c for each candidate that checked out
    (ok = yes, or c3 a name) and answer the shallowest (ties to the earliest); `?` if none.
  Up to 9 subquestions. Any other question (simple or malformed) is asked as it stands.
"""

from __future__ import annotations

import math
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
    random_permutations,
)

KINDS = ("parent", "depth", "value", "given", "neighbor", "adjacent")
PARENT, DEPTH, VALUE, GIVEN, NEIGHBOR, ADJACENT = range(len(KINDS))
TABLE_KINDS = 4  # parent, depth, value, given: one precomputed answer per name


def ceil_sqrt(n: int) -> int:
    return math.isqrt(n - 1) + 1 if n > 0 else 0


def round_sqrt(n: int) -> int:
    r = math.isqrt(n)
    return r + 1 if n - r * r > r else r


class UnionFind(Task):
    name = "UnionFind"
    kinds = KINDS
    main_kinds = ("value",)
    simple_kinds = ("given", "neighbor", "adjacent")
    min_size = 2
    fact_len = 3
    question_len = 3
    max_subquestions = 9

    def __init__(self, size: int = 64, max_size: int | None = None) -> None:
        super().__init__(size, max_size)
        self.num_classes = max(1, round_sqrt(self.size))
        self.num_values = max(2, ceil_sqrt(self.size))
        pool = max(2, ceil_sqrt(self.max_size))
        self.vocab = Vocab(
            [*KINDS, "yes", "no", "=", "~"],
            numbers=(0, self.max_size),
            num_names=self.max_size,
            num_values=pool,
        )
        self.max_facts = self.max_size
        self.num_difficulties = self.max_size
        v = self.vocab
        self.tok = np.array([v.sym(k) for k in KINDS])
        self.yes, self.no, self.eq, self.edge = v.sym("yes"), v.sym("no"), v.sym("="), v.sym("~")
        self.zero = int(v.number(0))

    # -- encoding ---------------------------------------------------------------------------
    def encode(self, kind: int, x: np.ndarray, y: np.ndarray | int = PAD) -> np.ndarray:
        """Questions `kind x [y]` for name-token columns x (and y)."""
        x = np.asarray(x)
        q = np.empty((len(x), self.question_len), dtype=np.int64)
        q[:, 0] = self.tok[kind]
        q[:, 1] = x
        q[:, 2] = y
        return q

    def name_slot(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(index into the name tables, is a name token) of each token (index 0 where not)."""
        j = np.asarray(tokens) - self.vocab.name_base
        ok = (j >= 0) & (j < self.vocab.num_names)
        return np.where(ok, j, 0), ok

    # -- context ----------------------------------------------------------------------------
    def generate(self, rng: np.random.Generator, batch: int) -> Contexts:
        n, c, v = self.size, self.num_classes, self.vocab
        rows = np.arange(batch)[:, None]
        pos = np.arange(n)[None, :]
        # A random order of the elements, cut into c nonempty runs: the classes.
        order = random_permutations(rng, batch, n)  # order[b, i]: the element at position i
        is_start = np.zeros((batch, n), dtype=bool)
        is_start[:, 0] = True
        if c > 1:
            is_start[rows, random_permutations(rng, batch, n - 1)[:, : c - 1] + 1] = True
        class_id = np.cumsum(is_start, axis=1) - 1
        start = np.maximum.accumulate(np.where(is_start, pos, 0), axis=1)
        # Random recursive trees: position i hangs below a uniform earlier position of its run.
        ppos = np.where(is_start, pos, start + randint_below(rng, np.maximum(pos - start, 1)))
        # Depth by pointer jumping (ancestors at distance 2^t), ceil(log2(n)) rounds.
        anc, dist = ppos, (~is_start).astype(np.int64)
        for _ in range(max(n - 1, 1).bit_length()):
            dist = dist + np.take_along_axis(dist, anc, axis=1)
            anc = np.take_along_axis(anc, anc, axis=1)
        # Root values: a random subset of the value pool per context, uniform per class.
        values = random_permutations(rng, batch, v.num_values)[:, : self.num_values] + v.value_base
        class_value = np.take_along_axis(values, randint_below(rng, np.full((batch, c), self.num_values)), 1)
        # From positions to elements.
        parent = np.empty((batch, n), dtype=np.int64)
        depth = np.empty((batch, n), dtype=np.int64)
        value = np.empty((batch, n), dtype=np.int64)
        parent[rows, order] = np.take_along_axis(order, ppos, axis=1)
        depth[rows, order] = dist
        value[rows, order] = np.take_along_axis(class_value, class_id, axis=1)
        root = depth == 0

        names, name_index = self.make_names(rng, batch)
        pname = np.take_along_axis(names, parent, axis=1)
        flip = rng.random((batch, n)) < 0.5
        facts = np.empty((batch, n, 3), dtype=np.int64)
        facts[:, :, 0] = np.where(root | ~flip, names, pname)
        facts[:, :, 1] = np.where(root, self.eq, self.edge)
        facts[:, :, 2] = np.where(root, value, np.where(flip, names, pname))
        facts = self.pack_facts(rng, facts, np.ones((batch, n), dtype=bool))

        # Answers of the one-argument kinds, indexed by name token (`?` for names not in the episode).
        slot = names - v.name_base
        table = np.full((batch, TABLE_KINDS, v.num_names), UNKNOWN, dtype=np.int64)
        table[rows, PARENT, slot] = pname
        table[rows, DEPTH, slot] = v.number(depth)
        table[rows, VALUE, slot] = value
        table[rows, GIVEN, slot] = np.where(root, value, self.no)

        # Neighbour lists, flat: a fixed (batch, 2n) array of neighbour names grouped by element
        # (parent first, then children), with each name's offset and count.
        child = np.where(root, -1, np.arange(n)[None, :])
        src = np.concatenate([child, np.where(root, -1, parent)], axis=1)
        dst = np.concatenate([parent, np.broadcast_to(np.arange(n), (batch, n))], axis=1)
        key = np.where(src >= 0, src, n)
        by_src = np.argsort(key, axis=1, kind="stable")
        nbr_elem = np.take_along_axis(dst, by_src, axis=1)
        nbr = np.where(
            np.take_along_axis(key, by_src, axis=1) < n, np.take_along_axis(names, nbr_elem, 1), PAD
        )
        children = np.bincount((rows * n + parent)[~root], minlength=batch * n).reshape(batch, n)
        degree = children + ~root
        nbr_count = np.zeros((batch, v.num_names), dtype=np.int64)
        nbr_start = np.zeros((batch, v.num_names), dtype=np.int64)
        nbr_count[rows, slot] = degree
        nbr_start[rows, slot] = np.cumsum(degree, axis=1) - degree
        data = {
            "parent": parent,
            "depth": depth,
            "value": value,
            "table": table,
            "nbr": nbr,
            "nbr_start": nbr_start,
            "nbr_count": nbr_count,
        }
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
        which = np.array([self.kinds.index(k) for k in kinds])[rng.integers(0, len(kinds), size=b)]
        x = rng.integers(0, self.size, size=b)
        if "parent" in kinds:
            # parent questions ask about a uniformly random non-root
            key = np.where(ctx.data["depth"][idx] == 0, 2.0, rng.random((b, self.size)))
            x = np.where(which == PARENT, np.argmin(key, axis=1), x)
        q = self.encode(0, ctx.names[idx, x])
        q[:, 0] = self.tok[which]
        return q

    # -- answers ----------------------------------------------------------------------------
    def kind_of(self, questions: np.ndarray) -> np.ndarray:
        """(M,) index into `kinds` of each question's first token, -1 if it is no kind. The kinds
        are the first symbols, so this is a subtraction (same result as `Task.kind_of`)."""
        k = questions[:, 0] - self.tok[0]
        return np.where((k >= 0) & (k < len(KINDS)), k, -1)

    def is_simple(self, questions: np.ndarray) -> np.ndarray:
        return self.kind_of(questions) >= GIVEN

    def _table(self, ctx: Contexts, ctx_idx: np.ndarray, row: np.ndarray | int, j: np.ndarray) -> np.ndarray:
        """table[ctx_idx, row, j] as one flat gather."""
        table = ctx.data["table"]
        return table.reshape(-1)[(ctx_idx * TABLE_KINDS + row) * table.shape[2] + j]

    def _present(self, ctx: Contexts, ctx_idx: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        j, ok = self.name_slot(tokens)
        return ok & (self._table(ctx, ctx_idx, PARENT, j) != UNKNOWN)

    def _adjacent(self, ctx: Contexts, ctx_idx: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """`yes`/`no` for `x ~ y` (`?` unless both are names of the episode)."""
        jx, okx = self.name_slot(x)
        jy, oky = self.name_slot(y)
        px = self._table(ctx, ctx_idx, PARENT, jx)
        py = self._table(ctx, ctx_idx, PARENT, jy)
        edge = ((px == y) | (py == x)) & (x != y)
        ok = okx & oky & (px != UNKNOWN) & (py != UNKNOWN)
        return np.where(ok, np.where(edge, self.yes, self.no), UNKNOWN)

    def _neighbour(
        self, ctx: Contexts, ctx_idx: np.ndarray, x: np.ndarray, rng: np.random.Generator | None
    ) -> np.ndarray:
        """A uniformly random neighbour of each x (the first one if rng is None); `?` if none."""
        j, ok = self.name_slot(x)
        cnt = np.where(ok, ctx.data["nbr_count"][ctx_idx, j], 0)  # 0 for names not in the episode
        at = ctx.data["nbr_start"][ctx_idx, j]
        if rng is not None:
            at = at + randint_below(rng, np.maximum(cnt, 1))
        return np.where(cnt > 0, ctx.data["nbr"][ctx_idx, at], UNKNOWN)

    def is_valid(self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray) -> np.ndarray:
        k = self.kind_of(questions)
        second = questions[:, 2] == PAD
        adj = k == ADJACENT
        if adj.any():
            second[adj] = self._present(ctx, ctx_idx[adj], questions[adj, 2])
        return (k >= 0) & second & self._present(ctx, ctx_idx, questions[:, 1])

    def _answer(
        self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray, rng: np.random.Generator | None
    ) -> np.ndarray:
        """(M, 1) answers of every kind; `neighbor` random if rng is given, else the first one."""
        k = self.kind_of(questions)
        j, ok = self.name_slot(questions[:, 1])
        one_arg = ok & (k >= 0) & (questions[:, 2] == PAD)
        table_kind = one_arg & (k < TABLE_KINDS)
        # parent/depth/value/given: one gather (`?` in the table for names not in the episode)
        out = np.where(table_kind, self._table(ctx, ctx_idx, np.where(table_kind, k, 0), j), UNKNOWN)
        adj = k == ADJACENT
        if adj.any():
            out[adj] = self._adjacent(ctx, ctx_idx[adj], questions[adj, 1], questions[adj, 2])
        nb = one_arg & (k == NEIGHBOR)
        if nb.any():
            out[nb] = self._neighbour(ctx, ctx_idx[nb], questions[nb, 1], rng)
        return out[:, None]

    def ground_truth(self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray) -> np.ndarray:
        # `neighbor x`: one fixed neighbour (x's parent, or a root's first child); see `correct`.
        return self._answer(ctx, ctx_idx, questions, None)

    def lookup(
        self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        return self._answer(ctx, ctx_idx, questions, rng)

    def correct(
        self,
        ctx: Contexts,
        ctx_idx: np.ndarray,
        questions: np.ndarray,
        answers: np.ndarray,
        truth: np.ndarray | None = None,
    ) -> np.ndarray:
        """Exact match (against `truth` if given), except that `neighbor x` accepts any neighbour."""
        ok = super().correct(ctx, ctx_idx, questions, answers, truth)
        a = np.asarray(answers)[:, 0]
        nb = (self.kind_of(questions) == NEIGHBOR) & self.is_valid(ctx, ctx_idx, questions)
        if nb.any():
            ok[nb] |= self._adjacent(ctx, ctx_idx[nb], questions[nb, 1], a[nb]) == self.yes
        return ok

    def difficulty(self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray) -> np.ndarray:
        j, _ = self.name_slot(questions[:, 1])
        d, ok = self.vocab.number_value(self._table(ctx, ctx_idx, DEPTH, j))
        return np.where(ok, d, 0)

    # -- the expert H -------------------------------------------------------------------------
    def expert(self, questions: np.ndarray) -> ExpertProgram:
        m = len(questions)
        v = self.vocab
        k = self.kind_of(questions)
        x = questions[:, 1]
        form = v.is_name(x) & (questions[:, 2] == PAD)  # H checks the form; it cannot see the context
        is_par, is_dep, is_val = form & (k == PARENT), form & (k == DEPTH), form & (k == VALUE)
        ours = is_par | is_dep | is_val
        # Anything else (simple or malformed) is asked as it stands: the environment answers it.
        q = self.encode(GIVEN, x)
        q[~ours] = questions[~ours]
        g = (yield np.ones(m, dtype=bool), q)[:, 0]
        root = v.is_value(g)
        up = ours & ~root
        if not up.any():
            return np.where(is_dep, self.zero, np.where(is_par, x, g))[:, None]
        c1 = (yield up, self.encode(PARENT, x))[:, 0]
        q = np.empty((m, self.question_len), dtype=np.int64)
        q[:, 0] = np.where(is_par, self.tok[ADJACENT], np.where(is_dep, self.tok[DEPTH], self.tok[VALUE]))
        q[:, 1] = np.where(is_par, x, c1)
        q[:, 2] = np.where(is_par, c1, PAD)
        a = (yield up, q)[:, 0]
        d, d_ok = v.number_value(a)
        d_up = np.where(d_ok, v.number(d + 1), UNKNOWN)
        answer = np.where(is_val, np.where(root, g, a), np.where(is_dep, np.where(root, self.zero, d_up), g))
        answer = np.where(is_par & root, x, answer)
        search = is_par & ~root
        if search.any():
            ok1 = a == self.yes
            c2 = (yield search, self.encode(PARENT, x))[:, 0]
            ok2 = (yield search, self.encode(ADJACENT, x, c2))[:, 0] == self.yes
            c3 = (yield search, self.encode(NEIGHBOR, x))[:, 0]
            cands = np.stack([c1, c2, c3], axis=1)
            checked = np.stack([search & ok1, search & ok2, search & v.is_name(c3)], axis=1)
            big = np.iinfo(np.int64).max
            depth = np.full((m, 3), big, dtype=np.int64)
            for i in range(3):
                if checked[:, i].any():
                    di, di_ok = v.number_value((yield checked[:, i], self.encode(DEPTH, cands[:, i]))[:, 0])
                    depth[:, i] = np.where(checked[:, i] & di_ok, di, big)
            best = np.argmin(depth, axis=1)
            found = depth[np.arange(m), best] < big
            answer = np.where(search, np.where(found, cands[np.arange(m), best], UNKNOWN), answer)
        return answer[:, None]

    # -- rendering ----------------------------------------------------------------------------
    def render_fact(self, fact: np.ndarray) -> str:
        if fact[0] == PAD:
            return ""
        return " ".join(self.vocab.decode(t) for t in fact)

    def render_question(self, question: np.ndarray) -> str:
        k = self.kind_of(question[None, :])[0]
        if k < 0:
            return f"(malformed: {self.vocab.decode_seq(question)})"
        args = ", ".join(self.vocab.decode(t) for t in question[1:] if t != PAD)
        return f"{self.kinds[k]}({args}) = ?"
