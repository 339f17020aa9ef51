"""What every task shares: the token vocabulary, a batch of contexts, and the `Task` interface.

A task is question answering over a *context* (a set of facts, fresh for every episode). Everything
here is batched: a batch of B contexts is one `Contexts` object, and a batch of M questions about
them is a `(M, question_len)` token array plus `ctx_idx` (M,), the context each question is about,
so many questions can be asked of one context without copying it.

Token layout (one vocabulary per task instance, fixed by `max_size` so that a curriculum over sizes
keeps the same vocabulary): 0 is padding, 1 is `?` (unknown), then the task's symbols, then the
number tokens, then the element names, then the value names. Element names are drawn at random for
every episode, so no name means anything across episodes.

The expert H is written as a Python generator over whole batches (see `Task.expert`): it yields
`(asked, subquestion)` for each of its question slots and receives the answers, then returns the
final answer. `expert_step` turns that into a step-wise policy: given the question and the
subanswers so far, the next subquestion or the final answer. H never receives the context: it can
only read facts by asking simple questions, as in the paper.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field

import numpy as np

PAD = 0
UNKNOWN = 1

# A batched answer source: (ctx_idx (M,), questions (M, Lq)) -> answers (M, La).
AnswerFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
# The expert's program: yields (asked (M,), subquestion (M, Lq)), receives answers (M, La).
ExpertProgram = Generator[tuple[np.ndarray, np.ndarray], np.ndarray, np.ndarray]


def letters(i: int, upper: bool = False) -> str:
    """Bijective base-26 label: 0 -> a, 25 -> z, 26 -> aa, ..."""
    base = ord("A" if upper else "a")
    out = ""
    i += 1
    while i > 0:
        i, r = divmod(i - 1, 26)
        out = chr(base + r) + out
    return out


class Vocab:
    """Token ids of one task: PAD, `?`, symbols, numbers lo..hi, element names, value names."""

    def __init__(
        self,
        symbols: Sequence[str],
        numbers: tuple[int, int] | None = None,
        num_names: int = 0,
        num_values: int = 0,
    ) -> None:
        self.symbols = list(symbols)
        self._symbol_ids = {s: 2 + i for i, s in enumerate(self.symbols)}
        self.number_base = 2 + len(self.symbols)
        self.number_lo, self.number_hi = numbers if numbers is not None else (0, -1)
        self.num_numbers = self.number_hi - self.number_lo + 1
        self.name_base = self.number_base + self.num_numbers
        self.num_names = num_names
        self.value_base = self.name_base + num_names
        self.num_values = num_values
        self.size = self.value_base + num_values

    def __len__(self) -> int:
        return self.size

    def sym(self, symbol: str) -> int:
        return self._symbol_ids[symbol]

    # numbers ------------------------------------------------------------------------------
    def number(self, values: np.ndarray | int) -> np.ndarray:
        """Token of each integer; integers outside the number range become `?`."""
        v = np.asarray(values, dtype=np.int64)
        ok = (v >= self.number_lo) & (v <= self.number_hi)
        return np.where(ok, v - self.number_lo + self.number_base, UNKNOWN)

    def number_value(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(integer, is_number) for each token."""
        t = np.asarray(tokens)
        ok = (t >= self.number_base) & (t < self.number_base + self.num_numbers)
        return np.where(ok, t - self.number_base + self.number_lo, 0), ok

    def successor_tokens(self) -> np.ndarray:
        """(size,) for every token: the token of its value + 1 if it is a number (`?` past the
        largest number, as `number` gives), else PAD. Lets a learner say "d + 1" for every d."""
        table = np.zeros(self.size, dtype=np.int64)
        values = np.arange(self.number_lo, self.number_hi + 1)
        table[self.number_base : self.number_base + self.num_numbers] = self.number(values + 1)
        return table

    # element names ------------------------------------------------------------------------
    def is_name(self, tokens: np.ndarray) -> np.ndarray:
        t = np.asarray(tokens)
        return (t >= self.name_base) & (t < self.name_base + self.num_names)

    def is_value(self, tokens: np.ndarray) -> np.ndarray:
        t = np.asarray(tokens)
        return (t >= self.value_base) & (t < self.value_base + self.num_values)

    def decode(self, token: int) -> str:
        token = int(token)
        if token < 0 or token >= self.size:
            return f"<{token}>"
        if token == PAD:
            return "_"
        if token == UNKNOWN:
            return "?"
        if token < self.number_base:
            return self.symbols[token - 2]
        if token < self.name_base:
            return str(token - self.number_base + self.number_lo)
        if token < self.value_base:
            return letters(token - self.name_base)
        return letters(token - self.value_base, upper=True)

    def decode_seq(self, tokens: np.ndarray) -> str:
        return " ".join(self.decode(t) for t in np.asarray(tokens).ravel() if t != PAD)


@dataclass
class Contexts:
    """A batch of B contexts.

    `facts` (B, max_facts, fact_len) are the tokens a learner sees (padded rows are all PAD);
    `names` (B, size) is the name token of each element; `name_index` (B, num_names) maps a name
    token back to its element (-1 if the name is not in the episode); `data` holds the task's own
    precomputed tables (every array has the batch as its first axis).
    """

    facts: np.ndarray
    names: np.ndarray
    name_index: np.ndarray
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.facts.shape[0]

    def arrays(self) -> dict[str, np.ndarray]:
        return {"facts": self.facts, "names": self.names, "name_index": self.name_index, **self.data}

    def take(self, idx: np.ndarray) -> Contexts:
        """The contexts at `idx`, as a new batch."""
        return Contexts(
            self.facts[idx], self.names[idx], self.name_index[idx], {k: v[idx] for k, v in self.data.items()}
        )

    def put(self, idx: np.ndarray, other: Contexts, other_idx: np.ndarray | slice = slice(None)) -> None:
        """Overwrite the contexts at `idx` with `other[other_idx]` (same task and size), in place."""
        self.facts[idx] = other.facts[other_idx]
        self.names[idx] = other.names[other_idx]
        self.name_index[idx] = other.name_index[other_idx]
        for k, v in self.data.items():
            v[idx] = other.data[k][other_idx]


def question_rows(ctx: Contexts, ctx_idx: np.ndarray | None) -> np.ndarray:
    """The context of each question to sample: `ctx_idx`, or one question per context."""
    return np.arange(len(ctx)) if ctx_idx is None else np.asarray(ctx_idx, dtype=np.int64)


def check_size(name: str, value: object, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum} (this task's largest size), got {value!r}")
    return int(value)


def random_permutations(rng: np.random.Generator, batch: int, n: int) -> np.ndarray:
    """(batch, n) int64: an independent uniform permutation of range(n) per row."""
    return rng.permuted(np.broadcast_to(np.arange(n), (batch, n)), axis=1)


def randint_below(rng: np.random.Generator, high: np.ndarray) -> np.ndarray:
    """Uniform integers in [0, high) elementwise (high >= 1)."""
    return np.minimum((rng.random(np.shape(high)) * high).astype(np.int64), np.asarray(high) - 1)


class Task:
    """Interface of one task; one subclass per file under `amp_envs/tasks/`.

    Subclasses set the class attributes below and implement the methods that raise
    `NotImplementedError`. Shapes: facts (B, max_facts, fact_len), questions (M, question_len),
    answers (M, answer_len); everything is int64 tokens.
    """

    #: the registered name, e.g. "PermutationPower"
    name: str = ""
    #: question kinds, in the order used to break ties in the "strictly easier" order
    kinds: tuple[str, ...] = ()
    #: the kinds an episode asks by default (the task's main question)
    main_kinds: tuple[str, ...] = ()
    #: the kinds that are "simple" (answered from the context by a lookup)
    simple_kinds: tuple[str, ...] = ()
    answer_len: int = 1
    #: True when `difficulty` reads only the question's tokens (permutation powering's k, the
    #: number of wildcards). Elsewhere it is computed from the context (a depth, a distance) and
    #: says something about the answer, so Iterated Amplification must not select data by it.
    difficulty_from_question: bool = False

    def __init__(self, size: int, max_size: int | None = None) -> None:
        self.size = check_size("size", size, self.min_size, self.max_size_limit)
        limit = self.max_size_limit
        self.max_size = self.size if max_size is None else check_size("max_size", max_size, self.size, limit)

    # -- what each task defines ---------------------------------------------------------------
    min_size: int = 2
    #: the largest size (and max_size) a task is made at, checked before anything is allocated:
    #: at 4096 one context takes at most about 0.1 s and 100 MB to generate (shortest paths, the
    #: most expensive, grow with the square of the size); the paper's size is 64
    max_size_limit: int = 4096
    vocab: Vocab
    fact_len: int
    question_len: int
    max_facts: int
    #: the most subquestions the expert H ever asks (the environment's default budget)
    max_subquestions: int
    #: number of difficulty classes (difficulty is in range(num_difficulties))
    num_difficulties: int

    def generate(self, rng: np.random.Generator, batch: int) -> Contexts:
        """B fresh random contexts."""
        raise NotImplementedError

    def sample_questions(
        self,
        ctx: Contexts,
        rng: np.random.Generator,
        kinds: Sequence[str] | None = None,
        ctx_idx: np.ndarray | None = None,
    ) -> np.ndarray:
        """One random episode question per entry of `ctx_idx` (default: one per context), of the
        given kinds (default: `main_kinds`)."""
        raise NotImplementedError

    def is_valid(self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray) -> np.ndarray:
        """(M,) bool: the question is well formed and only names elements of its context."""
        raise NotImplementedError

    def ground_truth(self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray) -> np.ndarray:
        """(M, answer_len) true answers; `?` for malformed questions."""
        raise NotImplementedError

    def lookup(
        self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """(M, answer_len) answers of simple questions, read off one fact (may be random, e.g.
        "some neighbour of x"). Only meaningful where `is_simple`; `?` elsewhere is fine."""
        raise NotImplementedError

    def difficulty(self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray) -> np.ndarray:
        """(M,) int difficulty class of each (valid) question."""
        raise NotImplementedError

    def expert(self, questions: np.ndarray) -> ExpertProgram:
        """H's decomposition as a batched generator; see the module docstring."""
        raise NotImplementedError

    def render_fact(self, fact: np.ndarray) -> str:
        return self.vocab.decode_seq(fact)

    def render_question(self, question: np.ndarray) -> str:
        return self.vocab.decode_seq(question)

    def render_answer(self, answer: np.ndarray) -> str:
        return self.vocab.decode_seq(answer) or "_"

    # -- shared machinery ---------------------------------------------------------------------
    @property
    def kind_tokens(self) -> np.ndarray:
        return np.array([self.vocab.sym(k) for k in self.kinds])

    def kind_of(self, questions: np.ndarray) -> np.ndarray:
        """(M,) index into `kinds` of each question's first token, -1 if it is no kind."""
        table = getattr(self, "_kind_table", None)
        if table is None:
            table = np.full(self.vocab.size, -1, dtype=np.int64)
            table[self.kind_tokens] = np.arange(len(self.kinds))
            self._kind_table = table
        first = questions[:, 0]
        inside = (first >= 0) & (first < self.vocab.size)
        return np.where(inside, table[np.where(inside, first, 0)], -1)

    def is_simple(self, questions: np.ndarray) -> np.ndarray:
        """(M,) bool: a question H answers by reading one fact. Depends on the question alone."""
        table = getattr(self, "_simple_table", None)
        if table is None:  # indexed by kind index + 1 (index 0: not a kind)
            table = np.array([False] + [k in self.simple_kinds for k in self.kinds])
            self._simple_table = table
        return table[self.kind_of(questions) + 1]

    @property
    def episode_kinds(self) -> tuple[str, ...]:
        """Kinds that can be an episode's question: every kind that is not simple."""
        return tuple(k for k in self.kinds if k not in self.simple_kinds)

    def check_kinds(self, kinds: Sequence[str] | None) -> tuple[str, ...]:
        """Validate a choice of episode question kinds (None: the main kinds)."""
        if kinds is None:
            return self.main_kinds
        kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
        bad = [k for k in kinds if k not in self.episode_kinds]
        if bad or not kinds:
            raise ValueError(
                f"{self.name}: question kinds {list(kinds)!r} not allowed; "
                f"choose from {list(self.episode_kinds)}"
            )
        return kinds

    def easier_key(self, ctx: Contexts, ctx_idx: np.ndarray, questions: np.ndarray) -> np.ndarray:
        """The well-founded "strictly easier" order: difficulty class first, then kind order."""
        return self.difficulty(ctx, ctx_idx, questions) * len(self.kinds) + self.kind_of(questions)

    def correct(
        self,
        ctx: Contexts,
        ctx_idx: np.ndarray,
        questions: np.ndarray,
        answers: np.ndarray,
        truth: np.ndarray | None = None,
    ) -> np.ndarray:
        """(M,) bool: is each answer right. `truth`, if given, is `ground_truth` of the questions
        (precomputed). Exact match by default; tasks with several right answers (shortest-path
        next steps) override it."""
        if truth is None:
            truth = self.ground_truth(ctx, ctx_idx, questions)
        return np.all(np.asarray(answers)[:, : self.answer_len] == truth, axis=1)

    def element(self, ctx: Contexts, ctx_idx: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """Element index of each name token in its context (-1 for anything else)."""
        t = np.asarray(tokens)
        ok = self.vocab.is_name(t)
        j = np.where(ok, t - self.vocab.name_base, 0)
        return np.where(ok, ctx.name_index[ctx_idx, j], -1)

    def name_of(self, ctx: Contexts, ctx_idx: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Name token of each element index (`?` for index < 0)."""
        i = np.asarray(index)
        return np.where(i >= 0, ctx.names[ctx_idx, np.maximum(i, 0)], UNKNOWN)

    def make_names(self, rng: np.random.Generator, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """Random distinct names for `size` elements per context, and the inverse map."""
        if self.vocab.num_names == 0:  # a task without element names (wildcard search)
            return np.zeros((batch, 0), np.int64), np.zeros((batch, 0), np.int64)
        perm = random_permutations(rng, batch, self.vocab.num_names)
        names = perm[:, : self.size] + self.vocab.name_base
        name_index = np.full((batch, self.vocab.num_names), -1, dtype=np.int64)
        np.put_along_axis(name_index, perm[:, : self.size], np.arange(self.size)[None, :], axis=1)
        return names, name_index

    def pack_facts(self, rng: np.random.Generator, rows: np.ndarray, present: np.ndarray) -> np.ndarray:
        """Shuffle each context's fact rows and pad to `max_facts`.

        rows: (B, K, fact_len) candidate facts; present: (B, K) which of them are facts. The facts
        of a context come first, in random order, then all-PAD rows.
        """
        batch, k, _ = rows.shape
        key = np.where(present, rng.random((batch, k)), 2.0)
        order = np.argsort(key, axis=1)
        out = np.take_along_axis(rows, order[:, :, None], axis=1)
        out[~np.take_along_axis(present, order, axis=1)] = PAD
        if k < self.max_facts:
            out = np.concatenate([out, np.zeros((batch, self.max_facts - k, rows.shape[2]), np.int64)], 1)
        return out[:, : self.max_facts]

    def answer_subquestions(
        self,
        ctx: Contexts,
        ctx_idx: np.ndarray,
        questions: np.ndarray,
        rng: np.random.Generator,
        answerer: AnswerFn | None = None,
        learned: np.ndarray | None = None,
    ) -> np.ndarray:
        """Answers as an environment gives them: simple questions from the context (`lookup`),
        malformed ones `?`, the rest by `learned` (a learner's answers (M, La) for every row,
        used where needed), else by `answerer(ctx_idx, questions)`, else the ground truth.

        With `learned` or `answerer` given this never reads the ground truth: that is what lets
        Iterated Amplification build its targets without it."""
        m = len(questions)
        out = np.full((m, self.answer_len), UNKNOWN, dtype=np.int64)
        valid = self.is_valid(ctx, ctx_idx, questions)
        simple = valid & self.is_simple(questions)
        if simple.any():
            out[simple] = self.lookup(ctx, ctx_idx[simple], questions[simple], rng)
        hard = valid & ~simple
        if hard.any():
            if learned is not None:
                out[hard] = learned[hard]
            elif answerer is not None:
                out[hard] = answerer(ctx_idx[hard], questions[hard])
            else:
                out[hard] = self.ground_truth(ctx, ctx_idx[hard], questions[hard])
        return out

    def question(self, *columns: np.ndarray | int) -> np.ndarray:
        """Stack token columns (arrays or scalars) into (M, question_len) questions, PAD-filled."""
        m = max((np.shape(c)[0] for c in columns if np.ndim(c) > 0), default=1)
        out = np.zeros((m, self.question_len), dtype=np.int64)
        for j, c in enumerate(columns):
            out[:, j] = c
        return out

    def expert_step(
        self, questions: np.ndarray, sub_answers: np.ndarray, num_answered: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One step of H for a batch: (done (M,), next subquestion (M, Lq), final answer (M, La)).

        `sub_answers` (M, S, La) holds the answers to H's first `num_answered` subquestions (the
        rest is ignored). Where `done`, the final answer is valid; elsewhere the next subquestion.
        """
        m = len(questions)
        if sub_answers.shape[1] == 0:  # a zero budget: H still needs a slot to index
            sub_answers = np.full((m, 1, self.answer_len), UNKNOWN, dtype=np.int64)
        num_slots = sub_answers.shape[1]
        rows = np.arange(m)
        decided = np.zeros(m, dtype=bool)
        next_q = np.zeros((m, self.question_len), dtype=np.int64)
        pos = np.zeros(m, dtype=np.int64)
        program = self.expert(questions)
        asked, subq = next(program)
        try:
            while True:
                emit = asked & ~decided & (pos == num_answered)
                next_q[emit] = subq[emit]
                decided |= emit
                answer = sub_answers[rows, np.minimum(pos, num_slots - 1)]
                answer = np.where((asked & (pos < num_answered))[:, None], answer, UNKNOWN)
                pos += asked
                asked, subq = program.send(answer)
        except StopIteration as stop:
            final = np.asarray(stop.value, dtype=np.int64).reshape(m, self.answer_len)
        return ~decided, next_q, final

    def run_expert(
        self,
        ctx: Contexts,
        ctx_idx: np.ndarray,
        questions: np.ndarray,
        rng: np.random.Generator,
        answerer: AnswerFn | None = None,
    ) -> Transcripts:
        """Play H to the end on every question; subquestions answered as by `answer_subquestions`
        (ground truth for non-simple ones unless `answerer` is given).

        Drives H's program once, slot by slot (the same order `expert_step` replays), so the cost
        is linear in the number of subquestions."""
        m = len(questions)
        s = self.max_subquestions
        subq = np.zeros((m, s, self.question_len), dtype=np.int64)
        suba = np.zeros((m, s, self.answer_len), dtype=np.int64)
        n = np.zeros(m, dtype=np.int64)
        program = self.expert(questions)
        asked, question = next(program)
        try:
            while True:
                rows = np.flatnonzero(asked)
                answer = np.full((m, self.answer_len), UNKNOWN, dtype=np.int64)
                if len(rows):
                    if n[rows].max() >= s:
                        raise RuntimeError(f"{self.name}: expert asked more than {s} subquestions")
                    answer[rows] = self.answer_subquestions(ctx, ctx_idx[rows], question[rows], rng, answerer)
                    subq[rows, n[rows]] = question[rows]
                    suba[rows, n[rows]] = answer[rows]
                    n[rows] += 1
                asked, question = program.send(answer)
        except StopIteration as stop:
            final = np.asarray(stop.value, dtype=np.int64).reshape(m, self.answer_len)
        return Transcripts(questions, subq, suba, n, final)


@dataclass
class Transcripts:
    """H's transcripts for M questions: subquestions (M, S, Lq), their answers (M, S, La), how
    many were asked (M,), and the final answers (M, La)."""

    questions: np.ndarray
    sub_questions: np.ndarray
    sub_answers: np.ndarray
    num_sub: np.ndarray
    answers: np.ndarray
