"""Sequential assignments, and its "eval-sum" variant.

Context: a program over `size` variables in dependency order (variable 0 first). round(sqrt(size))
of them (variable 0 and random others) are base variables, facts `x := v`, with v drawn uniformly
from the context's V = max(2, ceil(sqrt(size))) values (a random subset, per context, of a pool of
max(2, ceil(sqrt(max_size))) value tokens). Every other variable i is `x := f(y, z)` with y, z drawn
uniformly and independently from the variables before i. f is a random function table V x V -> V
per context; unlike the paper (which lists only the entries the program needs) the context holds
the WHOLE table as facts `f a b c`, so every f lookup H can ask about is defined.
Question kinds (in this order):
  * `arg1 x` (simple): the first operand y of a compound x, or the base value v of a base x.
  * `arg2 x` (simple): the second operand z of a compound x, or the base value v of a base x.
  * `f a b` (simple): f(a, b), for values a, b of this context.
  * `value x` (main): the value of variable x. Episode questions draw x uniformly. It is the
    only episode kind (there are no auxiliary kinds).
Difficulty class: the depth of the variable x (base variables 0, else 1 + the larger depth of its
operands) for arg1, arg2 and value questions; 0 for f questions.
Strictly easier: smaller depth, then the kinds order above. value(y) and value(z) for the operands
of x have smaller depth than x, so they are strictly easier than value(x).
H for value(x): a = arg1(x); if a is a value, x is a base variable: answer a. Else b = arg2(x),
va = value(a), vb = value(b), answer f(va, vb). At most 5 subquestions. Any other question (simple
or malformed) H asks as it stands and answers with what it is told.
Every answer (and difficulty) of a context is precomputed in `generate` into one flat table per
context, so ground_truth / is_valid / lookup / difficulty are a few table gathers (see `slot`).

EvalSum (the paper's "eval-sum"): the values are the numbers 0..7, f is addition mod 8 (fixed and
known, so there are no f facts; f questions stay simple and are answered by computing), and base
values are +1 or -1 (the numbers 1 and 7), uniformly. Everything else is as above.
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

ARG1, ARG2, F, VALUE = range(4)  # indices into `kinds`


def ceil_sqrt(n: int) -> int:
    r = math.isqrt(n)
    return r if r * r == n else r + 1


class SequentialAssignment(Task):
    name = "SequentialAssignment"
    kinds = ("arg1", "arg2", "f", "value")
    main_kinds = ("value",)
    simple_kinds = ("arg1", "arg2", "f")
    fact_len = 4
    question_len = 3
    max_subquestions = 5
    min_size = 2

    def __init__(self, size: int = 64, max_size: int | None = None) -> None:
        super().__init__(size, max_size)
        self.num_base = max(1, int(round(math.sqrt(self.size))))
        self.num_difficulties = self.max_size
        self._setup_values()
        self.kind_tok = self.kind_tokens  # token of each kind, in kinds order
        self.assign_tok = self.vocab.sym(":=")
        self._build_token_tables()

    def _setup_values(self) -> None:
        """Set the vocabulary, `pool` (value tokens in it, from `value_tok_base`), `num_values`
        (V, values per context) and `max_facts`."""
        self.pool = max(2, ceil_sqrt(self.max_size))
        self.num_values = max(2, ceil_sqrt(self.size))
        self.vocab = Vocab([*self.kinds, ":="], num_names=self.max_size, num_values=self.pool)
        self.value_tok_base = self.vocab.value_base
        self.max_facts = self.max_size + self.pool * self.pool

    def _build_token_tables(self) -> None:
        """Tables that turn a question into its slot in a context's answer table (see `slot`).

        Answer table layout per context (`qa`, `qdepth` in `Contexts.data`, length `table_len`):
        [arg1 by name offset | arg2 by name offset | value by name offset | f by value offsets
        a * pool + b | one trap slot for malformed questions]. Unused slots hold `?`.
        """
        nn, pool, vs = self.vocab.num_names, self.pool, self.vocab.size
        self.table_len = big = 3 * nn + pool * pool + 1
        tokens = np.arange(vs + 1)  # vs: where every out-of-vocabulary token is clamped
        name_off = np.where(self.vocab.is_name(tokens), tokens - self.vocab.name_base, big)
        is_val = self.is_base_value(tokens)
        val_off = np.where(is_val, tokens - self.value_tok_base, big)
        # per first token: the kind's section start, and which operand tables to use (var: 0, f: vs + 1)
        self._section = np.full(vs + 1, big, dtype=np.int64)
        self._section[self.kind_tok[[ARG1, ARG2, VALUE]]] = np.arange(3) * nn
        self._section[self.kind_tok[F]] = 3 * nn
        self._operands = np.zeros(vs + 1, dtype=np.int64)
        self._operands[self.kind_tok[F]] = vs + 1
        self._first = np.concatenate([name_off, np.where(is_val, val_off * pool, big)])
        self._second = np.concatenate([np.where(tokens == PAD, 0, big), val_off])
        self._simple = np.zeros(vs + 1, dtype=bool)
        self._simple[self.kind_tok[[ARG1, ARG2, F]]] = True

    # -- encoding ---------------------------------------------------------------------------
    def encode(self, kind: int, a: np.ndarray, b: np.ndarray | int = PAD) -> np.ndarray:
        """Questions `kind a b` (b is PAD for arg1, arg2 and value)."""
        q = np.empty((len(a), self.question_len), dtype=np.int64)
        q[:, 0] = self.kind_tok[kind]
        q[:, 1] = a
        q[:, 2] = b
        return q

    def clamp_tokens(self, questions: np.ndarray) -> np.ndarray:
        """The questions with every token outside the vocabulary (negative too) set to vocab.size."""
        q = np.ascontiguousarray(questions, dtype=np.int64)
        return np.minimum(q.view(np.uint64), self.vocab.size).view(np.int64)

    def slot(self, ctx_idx: np.ndarray, questions: np.ndarray) -> np.ndarray:
        """(M,) flat index of each question's entry in `qa` / `qdepth` (the trap slot if malformed)."""
        t = self.clamp_tokens(questions)
        t0 = t[:, 0]
        ops = self._operands[t0]
        i = self._section[t0] + self._first[ops + t[:, 1]] + self._second[ops + t[:, 2]]
        return np.asarray(ctx_idx, dtype=np.int64) * self.table_len + np.minimum(i, self.table_len - 1)

    def is_simple(self, questions: np.ndarray) -> np.ndarray:
        return self._simple[self.clamp_tokens(questions[:, :1])[:, 0]]

    def is_base_value(self, tokens: np.ndarray) -> np.ndarray:
        """Is each token a value (so arg1 of a base variable), judged from the token alone."""
        t = np.asarray(tokens)
        return (t >= self.value_tok_base) & (t < self.value_tok_base + self.pool)

    # -- context ----------------------------------------------------------------------------
    def _value_system(self, rng: np.random.Generator, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """(value tokens (B, V), f table (B, V, V) as value indices)."""
        v = self.num_values
        values = random_permutations(rng, batch, self.pool)[:, :v] + self.value_tok_base
        return values, rng.integers(0, v, size=(batch, v, v))

    def _f_facts(self, values: np.ndarray, f_tok: np.ndarray) -> np.ndarray:
        """The f facts `f a b c` (B, V*V, 4), from the value tokens and f_tok (B, V, V) = c."""
        batch, v = values.shape
        rows = np.empty((batch, v, v, 4), dtype=np.int64)
        rows[..., 0] = self.kind_tok[F]
        rows[..., 1] = values[:, :, None]
        rows[..., 2] = values[:, None, :]
        rows[..., 3] = f_tok
        return rows.reshape(batch, v * v, 4)

    def _base_values(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        """Value index (into the context's values) of each base variable."""
        return rng.integers(0, self.num_values, size=shape)

    def generate(self, rng: np.random.Generator, batch: int) -> Contexts:
        n, v, nn, length = self.size, self.num_values, self.vocab.num_names, self.table_len
        bi = np.arange(batch)
        values, table = self._value_system(rng, batch)
        names, name_index = self.make_names(rng, batch)
        is_base = np.zeros((batch, n), dtype=bool)
        is_base[:, 0] = True
        if self.num_base > 1:
            others = random_permutations(rng, batch, n - 1)[:, : self.num_base - 1] + 1
            is_base[bi[:, None], others] = True
        base_val = self._base_values(rng, (batch, n))
        high = np.broadcast_to(np.maximum(np.arange(n), 1), (batch, n))
        y = randint_below(rng, high)
        z = randint_below(rng, high)
        # values (as value indices) and depths, in dependency order; variable-major (n, B) layout
        # so that each step reads and writes contiguous rows through flat indices
        val_t = np.empty((n, batch), dtype=np.int32)  # int32: fewer cache misses in the gathers
        depth_t = np.zeros((n, batch), dtype=np.int32)
        val_t[0] = base_val[:, 0]
        y_at, z_at = (y.T * batch + bi).copy(), (z.T * batch + bi).copy()
        base_t, base_val_t = is_base.T.copy(), base_val.T.copy()
        val_flat, depth_flat, table_flat = val_t.reshape(-1), depth_t.reshape(-1), table.reshape(-1)
        table_at = bi * (v * v)
        for i in range(1, n):
            yi, zi = y_at[i], z_at[i]
            f_val = table_flat[table_at + val_flat[yi] * v + val_flat[zi]]
            val_t[i] = np.where(base_t[i], base_val_t[i], f_val)
            depth_t[i] = np.where(base_t[i], 0, 1 + np.maximum(depth_flat[yi], depth_flat[zi]))
        val, depth = val_t.T, depth_t.T
        row_at = bi[:, None] * n
        values_at = bi[:, None] * v
        base_tok = values.reshape(-1)[values_at + base_val]
        names_flat = names.reshape(-1)
        arg1 = np.where(is_base, base_tok, names_flat[row_at + y])
        arg2 = np.where(is_base, base_tok, names_flat[row_at + z])
        f_tok = values.reshape(-1)[values_at + table.reshape(batch, -1)]
        var_rows = np.stack(
            [names, np.full_like(names, self.assign_tok), arg1, np.where(is_base, PAD, arg2)], 2
        )
        rows = np.concatenate([var_rows, self._f_facts(values, f_tok.reshape(batch, v, v))], axis=1)
        facts = self.pack_facts(rng, rows, np.ones(rows.shape[:2], dtype=bool))
        # the answer (and difficulty) of every well-formed question, laid out as in `slot`
        qa = np.full((batch, length), UNKNOWN, dtype=np.int64)
        qdepth = np.zeros((batch, length), dtype=np.int64)
        qa_flat, qdepth_flat = qa.reshape(-1), qdepth.reshape(-1)
        at = bi[:, None] * length + (names - self.vocab.name_base)
        for section, answer in enumerate([arg1, arg2, values.reshape(-1)[values_at + val]]):
            qa_flat[at + section * nn] = answer
            qdepth_flat[at + section * nn] = depth
        off = values - self.value_tok_base
        f_at = 3 * nn + off[:, :, None] * self.pool + off[:, None, :]
        qa_flat[bi[:, None] * length + f_at.reshape(batch, -1)] = f_tok
        data = {"qa": qa, "qdepth": qdepth, "values": values}
        return Contexts(facts, names, name_index, data)

    def sample_questions(
        self,
        ctx: Contexts,
        rng: np.random.Generator,
        kinds: Sequence[str] | None = None,
        ctx_idx: np.ndarray | None = None,
    ) -> np.ndarray:
        self.check_kinds(kinds)
        idx = question_rows(ctx, ctx_idx)
        x = rng.integers(0, self.size, size=len(idx))
        return self.encode(VALUE, ctx.names[idx, x])

    # -- answers ----------------------------------------------------------------------------
    def _table_answer(self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray) -> np.ndarray:
        """The precomputed answer of any question (`?` if malformed): one gather."""
        return ctx.data["qa"].reshape(-1)[self.slot(ctx_idx, questions)][:, None]

    def is_valid(self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray) -> np.ndarray:
        # every well-formed question has an answer that is a name or a value, never `?`
        return self._table_answer(ctx, ctx_idx, questions)[:, 0] != UNKNOWN

    def ground_truth(self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray) -> np.ndarray:
        return self._table_answer(ctx, ctx_idx, questions)

    def lookup(
        self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        # every simple answer is one fact of the context (op in EvalSum: the known sum); a value
        # question is not simple and gets `?` here
        answer = self._table_answer(ctx, ctx_idx, questions)
        return np.where(self.is_simple(questions)[:, None], answer, UNKNOWN)

    def difficulty(self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray) -> np.ndarray:
        return ctx.data["qdepth"].reshape(-1)[self.slot(ctx_idx, questions)]

    # -- the expert H -------------------------------------------------------------------------
    def expert(self, questions: np.ndarray) -> ExpertProgram:
        m = len(questions)
        is_value_q = (questions[:, 0] == self.kind_tok[VALUE]) & (questions[:, 2] == PAD)
        x = questions[:, 1]
        # A simple (or malformed) question is asked as it stands: the environment answers it.
        a = yield np.ones(m, dtype=bool), np.where(is_value_q[:, None], self.encode(ARG1, x), questions)
        a = a[:, 0]
        compound = is_value_q & ~self.is_base_value(a)
        b = yield compound, self.encode(ARG2, x)
        va = yield compound, self.encode(VALUE, a)
        vb = yield compound, self.encode(VALUE, b[:, 0])
        c = yield compound, self.encode(F, va[:, 0], vb[:, 0])
        return np.where(compound, c[:, 0], a)[:, None]

    # -- rendering ----------------------------------------------------------------------------
    def render_fact(self, fact: np.ndarray) -> str:
        d = self.vocab.decode
        if fact[0] == PAD:
            return ""
        if fact[0] == self.kind_tok[F]:
            return f"op({d(fact[1])}, {d(fact[2])}) = {d(fact[3])}"
        if fact[3] == PAD:
            return f"{d(fact[0])} := {d(fact[2])}"
        return f"{d(fact[0])} := op({d(fact[2])}, {d(fact[3])})"

    def render_question(self, question: np.ndarray) -> str:
        q = self.clamp_tokens(np.asarray(question)[None, :])[0]
        d = self.vocab.decode
        if q[0] == self.kind_tok[F] and self.is_base_value(q[1:]).all():
            return f"op({d(q[1])}, {d(q[2])}) = ?"
        if q[0] in self.kind_tok[[ARG1, ARG2, VALUE]] and self.vocab.is_name(q[1]) and q[2] == PAD:
            return f"{d(q[0])}({d(q[1])}) = ?"
        return f"(malformed: {self.vocab.decode_seq(question)})"


class EvalSum(SequentialAssignment):
    name = "EvalSum"
    modulus = 8

    def _setup_values(self) -> None:
        self.pool = self.num_values = self.modulus
        self.vocab = Vocab([*self.kinds, ":="], numbers=(0, self.modulus - 1), num_names=self.max_size)
        self.value_tok_base = self.vocab.number_base
        self.max_facts = self.max_size  # no f facts: f is known

    def _value_system(self, rng: np.random.Generator, batch: int) -> tuple[np.ndarray, np.ndarray]:
        v = np.arange(self.modulus)
        values = np.broadcast_to(self.vocab.number(v), (batch, self.modulus)).copy()
        table = np.broadcast_to((v[:, None] + v[None, :]) % self.modulus, (batch, self.modulus, self.modulus))
        return values, table

    def _f_facts(self, values: np.ndarray, f_tok: np.ndarray) -> np.ndarray:
        return np.zeros((len(values), 0, 4), dtype=np.int64)  # f is known: no f facts

    def _base_values(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        return np.where(rng.random(shape) < 0.5, 1, self.modulus - 1)  # +1 or -1
