"""Wildcard search.

Context: a function from bit strings of length `bits` = max(1, ceil(log2(max_size))) to {-1, +1},
given on `size` of the 2^bits strings (a random subset; all of them when size == 2^bits, the
paper's setting at size 64: 6 bits, 64 facts), as facts `b_1 ... b_bits v`. A string that is not
given counts 0. The string length is fixed by `max_size`, so a curriculum over sizes keeps one
vocabulary and one question shape.
Question kinds:
  * `sum p_1 ... p_bits` (main), each p_i in {0, 1, *}: the sum of the values of all given strings
    that match the pattern. A pattern without `*` is simple (a lookup of one fact; 0 if the
    string is not given). Episode questions draw the number of `*` uniformly from 1..bits, their
    positions uniformly, and the other symbols uniformly from {0, 1}.
Difficulty class: the number of `*` in the pattern (0..bits).
Strictly easier: fewer `*` (each subquestion of H has exactly one `*` fewer than its question).
H: a pattern without `*` is asked as it stands (the environment answers the lookup). Otherwise
replace the first `*` by 0 and ask, then by 1 and ask, and answer the sum of the two answers (`?`
if either is not a number). 2 subquestions at most.
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
    random_permutations,
)

#: the longest string supported: the ground-truth table has 3^bits entries per context
MAX_BITS = 12


class WildcardSearch(Task):
    name = "WildcardSearch"
    kinds = ("sum",)
    difficulty_from_question = True
    main_kinds = ("sum",)
    simple_kinds = ()  # simplicity depends on the pattern, see is_simple
    max_subquestions = 2

    def __init__(self, size: int = 64, max_size: int | None = None) -> None:
        super().__init__(size, max_size)
        self.bits = max(1, (self.max_size - 1).bit_length())
        if self.bits > MAX_BITS:
            raise ValueError(f"{self.name}: max_size must be <= {1 << MAX_BITS}, got {self.max_size}")
        self.num_strings = 1 << self.bits
        self.vocab = Vocab(["sum", "0", "1", "*"], numbers=(-self.num_strings, self.num_strings))
        self.sum_token = self.vocab.sym("sum")
        self.bit0, self.bit1, self.star = self.vocab.sym("0"), self.vocab.sym("1"), self.vocab.sym("*")
        self.fact_len = self.bits + 1
        self.question_len = self.bits + 1
        self.max_facts = self.max_size
        self.num_difficulties = self.bits + 1
        # base-3 (0, 1, *) and base-2 place values, first position most significant
        self.pow3 = 3 ** np.arange(self.bits - 1, -1, -1, dtype=np.int64)
        self.pow2 = 1 << np.arange(self.bits - 1, -1, -1, dtype=np.int64)
        # a sum s is the token s + number_offset
        self.number_offset = self.vocab.number_base - self.vocab.number_lo

    # -- encoding ---------------------------------------------------------------------------
    def encode(self, digits: np.ndarray) -> np.ndarray:
        """Questions from (M, bits) pattern digits (0, 1, or 2 for `*`)."""
        q = np.empty((len(digits), self.question_len), dtype=np.int64)
        q[:, 0] = self.sum_token
        q[:, 1:] = np.asarray(digits) + self.bit0
        return q

    def pattern_of(self, questions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(digits (M, bits): 0, 1, 2 for `*`, anything where malformed; well_formed (M,))."""
        questions = np.asarray(questions, dtype=np.int64)
        digits = questions[:, 1:] - self.bit0
        ok = (questions[:, 0] == self.sum_token) & np.all(digits.view(np.uint64) <= 2, axis=1)
        return digits, ok

    # -- context ----------------------------------------------------------------------------
    def generate(self, rng: np.random.Generator, batch: int) -> Contexts:
        n, bits = self.num_strings, self.bits
        present = np.zeros((batch, n), dtype=bool)
        if self.size == n:
            present[:] = True
        else:
            np.put_along_axis(present, random_permutations(rng, batch, n)[:, : self.size], True, axis=1)
        values = ((rng.integers(0, 2, size=(batch, n), dtype=np.int8) * 2 - 1) * present).astype(np.int8)
        # candidate fact for every string j: its bits (most significant first), then its value
        string_bits = (np.arange(n)[:, None] & self.pow2[None, :]) > 0
        rows = np.empty((batch, n, self.fact_len), dtype=np.int64)
        rows[:, :, :bits] = np.where(string_bits, self.bit1, self.bit0)[None]
        rows[:, :, bits] = values + np.int64(self.number_offset)
        facts = self.pack_facts(rng, rows, present)
        # sums[b, pattern] for all 3^bits patterns: one pass per position turns axis i from
        # (0, 1) into (0, 1, *), the sum over both.
        table = values.astype(np.int32).reshape((batch,) + (2,) * bits)
        for axis in range(1, bits + 1):
            lo = np.take(table, [0], axis=axis)
            hi = np.take(table, [1], axis=axis)
            table = np.concatenate([lo, hi, lo + hi], axis=axis)
        sums = table.reshape(batch, 3**bits)
        names = np.zeros((batch, 0), dtype=np.int64)  # no element names in this task
        name_index = np.full((batch, 0), -1, dtype=np.int64)
        return Contexts(facts, names, name_index, {"values": values, "sums": sums})

    def sample_questions(
        self,
        ctx: Contexts,
        rng: np.random.Generator,
        kinds: Sequence[str] | None = None,
        ctx_idx: np.ndarray | None = None,
    ) -> np.ndarray:
        self.check_kinds(kinds)
        b, bits = len(question_rows(ctx, ctx_idx)), self.bits
        num_stars = rng.integers(1, bits + 1, size=b)
        rank = np.argsort(rng.random((b, bits)), axis=1)  # a random order of the positions
        digits = np.where(rank < num_stars[:, None], 2, rng.integers(0, 2, size=(b, bits)))
        return self.encode(digits)

    # -- answers ----------------------------------------------------------------------------
    def is_valid(self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray) -> np.ndarray:
        return self.pattern_of(questions)[1]

    def is_simple(self, questions: np.ndarray) -> np.ndarray:
        digits, ok = self.pattern_of(questions)
        return ok & ~np.any(digits == 2, axis=1)

    def ground_truth(self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray) -> np.ndarray:
        digits, ok = self.pattern_of(questions)
        index = np.where(ok, digits @ self.pow3, 0)
        sums = ctx.data["sums"][ctx_idx, index].astype(np.int64)
        return np.where(ok, sums + self.number_offset, UNKNOWN)[:, None]

    def lookup(
        self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        digits, ok = self.pattern_of(questions)
        ok &= np.all(digits.view(np.uint64) <= 1, axis=1)
        index = np.where(ok, digits @ self.pow2, 0)
        values = ctx.data["values"][ctx_idx, index].astype(np.int64)
        return np.where(ok, values + self.number_offset, UNKNOWN)[:, None]

    def difficulty(self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray) -> np.ndarray:
        return np.count_nonzero(questions[:, 1:] == self.star, axis=1)

    # -- the expert H -------------------------------------------------------------------------
    def expert(self, questions: np.ndarray) -> ExpertProgram:
        questions = np.asarray(questions, dtype=np.int64)
        m = len(questions)
        rows = np.arange(m)
        stars = questions[:, 1:] == self.star
        col = np.argmax(stars, axis=1) + 1  # the first `*`
        # A question without `*` is asked as it stands (the environment answers the lookup, or `?`
        # if it is malformed); a malformed one with a `*` is split too and its subquestions get `?`.
        simple = ~stars[rows, col - 1]
        sub0 = questions.copy()
        sub0[rows, col] = np.where(simple, questions[rows, col], self.bit0)
        a = yield np.ones(m, dtype=bool), sub0
        sub1 = questions.copy()
        sub1[rows, col] = self.bit1
        b = yield ~simple, sub1
        va, oka = self.vocab.number_value(a)
        vb, okb = self.vocab.number_value(b)
        total = np.where(oka & okb, self.vocab.number(va + vb), UNKNOWN)
        return np.where(simple[:, None], a, total)

    # -- rendering ----------------------------------------------------------------------------
    def render_fact(self, fact: np.ndarray) -> str:
        if fact[0] == PAD:
            return ""
        return f"f({''.join(self.vocab.decode(t) for t in fact[:-1])}) = {self.vocab.decode(fact[-1])}"

    def render_question(self, question: np.ndarray) -> str:
        _, ok = self.pattern_of(question[None, :])
        if not ok[0]:
            return f"(malformed: {self.vocab.decode_seq(question)})"
        return f"sum of f({''.join(self.vocab.decode(t) for t in question[1:])}) = ?"
