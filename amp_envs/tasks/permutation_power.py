"""Permutation powering.

Context: a random permutation s of `size` elements, as facts `x s(x)`.
Question kinds:
  * `pow k x` (main): s^k(x), with k written as 6 binary digits (1 <= k < 64). k = 1 is simple
    (a lookup of one fact). Episode questions draw k uniformly from 2..63.
Difficulty class: the recursion depth of H, `bit_length(k) - 1` (k = 1 -> 0, k in 32..63 -> 5).
Strictly easier: smaller difficulty class (k // 2 has one bit fewer than k).
H: ask y = s^(k//2)(x), then z = s^(k//2)(y); if k is odd ask the lookup s(z). At most 3
subquestions.
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

K_BITS = 6
BIT_WEIGHTS = 1 << np.arange(K_BITS - 1, -1, -1)  # most significant bit first


class PermutationPower(Task):
    name = "PermutationPower"
    kinds = ("pow",)
    difficulty_from_question = True
    main_kinds = ("pow",)
    simple_kinds = ()  # simplicity depends on k, see is_simple
    fact_len = 2
    question_len = 2 + K_BITS
    max_subquestions = 3
    num_difficulties = K_BITS

    def __init__(self, size: int = 64, max_size: int | None = None) -> None:
        super().__init__(size, max_size)
        self.vocab = Vocab(["pow", "0", "1"], num_names=self.max_size)
        self.bit0, self.bit1 = self.vocab.sym("0"), self.vocab.sym("1")
        assert self.bit1 == self.bit0 + 1
        self.pow_token = self.vocab.sym("pow")
        self.max_facts = self.max_size

    # -- encoding ---------------------------------------------------------------------------
    def encode(self, k: np.ndarray, x_tokens: np.ndarray) -> np.ndarray:
        bits = (np.asarray(k)[:, None] & BIT_WEIGHTS[None, :]) > 0
        q = np.empty((len(bits), self.question_len), dtype=np.int64)
        q[:, 0] = self.vocab.sym("pow")
        q[:, 1 : 1 + K_BITS] = np.where(bits, self.bit1, self.bit0)
        q[:, -1] = x_tokens
        return q

    def power_of(self, questions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(k, well_formed) of each question (k = 0 where not well formed)."""
        bits = questions[:, 1 : 1 + K_BITS] - self.bit0  # 0 or 1 where well formed
        ok = (bits.view(np.uint64) <= 1).all(axis=1) & (questions[:, 0] == self.pow_token)
        k = bits @ BIT_WEIGHTS
        ok &= k >= 1
        return np.where(ok, k, 0), ok

    # -- context ----------------------------------------------------------------------------
    def generate(self, rng: np.random.Generator, batch: int) -> Contexts:
        n = self.size
        perm = random_permutations(rng, batch, n)
        names, name_index = self.make_names(rng, batch)
        rows = np.stack([names, np.take_along_axis(names, perm, axis=1)], axis=2)
        facts = self.pack_facts(rng, rows, np.ones((batch, n), dtype=bool))
        # powers[b, k] = s^k for every k < 64, so the ground truth of any question is one gather.
        powers = np.empty((batch, 1 << K_BITS, n), dtype=np.int16 if n < 2**15 else np.int64)
        powers[:, 0] = np.arange(n)
        powers[:, 1] = perm
        rows = np.arange(batch)[:, None, None]
        m = 1
        while m < 1 << (K_BITS - 1):  # s^(m + j) = s^m o s^j: double the table each pass
            powers[:, m + 1 : 2 * m + 1] = powers[:, m][rows, powers[:, 1 : m + 1]]
            m *= 2
        powers[:, m + 1 :] = powers[:, m][rows, powers[:, 1 : (1 << K_BITS) - m]]
        return Contexts(facts, names, name_index, {"perm": perm, "powers": powers})

    def sample_questions(
        self,
        ctx: Contexts,
        rng: np.random.Generator,
        kinds: Sequence[str] | None = None,
        ctx_idx: np.ndarray | None = None,
    ) -> np.ndarray:
        self.check_kinds(kinds)
        idx = question_rows(ctx, ctx_idx)
        k = rng.integers(2, 1 << K_BITS, size=len(idx))
        x = rng.integers(0, self.size, size=len(idx))
        return self.encode(k, ctx.names[idx, x])

    # -- answers ----------------------------------------------------------------------------
    def is_valid(self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray) -> np.ndarray:
        _, ok = self.power_of(questions)
        return ok & (self.element(ctx, ctx_idx, questions[:, -1]) >= 0)

    def is_simple(self, questions: np.ndarray) -> np.ndarray:
        k, _ = self.power_of(questions)
        return k == 1

    def ground_truth(self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray) -> np.ndarray:
        k, _ = self.power_of(questions)
        x = self.element(ctx, ctx_idx, questions[:, -1])
        y = ctx.data["powers"][ctx_idx, k, np.maximum(x, 0)]
        return np.where((k >= 1) & (x >= 0), self.name_of(ctx, ctx_idx, y), UNKNOWN)[:, None]

    def lookup(
        self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        x = self.element(ctx, ctx_idx, questions[:, -1])
        y = ctx.data["perm"][ctx_idx, np.maximum(x, 0)]
        return np.where(x >= 0, self.name_of(ctx, ctx_idx, y), UNKNOWN)[:, None]

    def difficulty(self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray) -> np.ndarray:
        k, _ = self.power_of(questions)
        return np.maximum(np.floor(np.log2(np.maximum(k, 1))).astype(np.int64), 0)

    # -- the expert H -------------------------------------------------------------------------
    def expert(self, questions: np.ndarray) -> ExpertProgram:
        m = len(questions)
        k, _ = self.power_of(questions)
        x = questions[:, -1]
        simple = k <= 1
        half = k // 2
        everyone = np.ones(m, dtype=bool)
        # A simple (or malformed) question is asked as it stands: the environment answers it.
        y = yield everyone, np.where(simple[:, None], questions, self.encode(half, x))
        z = yield ~simple, self.encode(half, y[:, 0])
        odd = ~simple & (k % 2 == 1)
        w = yield odd, self.encode(np.ones(m, dtype=np.int64), z[:, 0])
        return np.where(simple[:, None], y, np.where(odd[:, None], w, z))

    # -- rendering ----------------------------------------------------------------------------
    def render_fact(self, fact: np.ndarray) -> str:
        if fact[0] == PAD:
            return ""
        return f"s({self.vocab.decode(fact[0])}) = {self.vocab.decode(fact[1])}"

    def render_question(self, question: np.ndarray) -> str:
        k, ok = self.power_of(question[None, :])
        if not ok[0]:
            return f"(malformed: {self.vocab.decode_seq(question)})"
        return f"s^{int(k[0])}({self.vocab.decode(question[-1])}) = ?"
