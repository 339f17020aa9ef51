"""The episode logic shared by the single and the vector environment, batched over n episodes.

An episode is one context and one question. Each step the agent either asks a subquestion (the
environment answers it and appends it to the transcript) or gives its final answer. `EpisodeBatch`
holds n episodes side by side as numpy arrays and steps them all at once; `AmpEnv` is n = 1 and
`AmpVectorEnv` is n = num_envs over the very same code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from gymnasium import spaces

from amp_envs.tasks import Contexts, Task
from amp_envs.tasks.base import UNKNOWN, AnswerFn

# A learner plugged in as the answerer: (facts (M, F, Lf), questions (M, Lq)) -> answers (M, La).
Answerer = Callable[[np.ndarray, np.ndarray], np.ndarray]
ANSWERER_NAMES = ("oracle-easier", "lookup-only", "oracle")
ASK, ANSWER = 0, 1

# Contexts are generated in chunks and handed out one per reset: generation is batched (fast)
# while episodes still come one by one. A chunk holds CONTEXT_CHUNK contexts up to size
# CHUNK_ELEMENTS / CONTEXT_CHUNK (64), fewer above, so that the first reset at a large size is as
# cheap as a few contexts (one at 4096). The stream is a pure function of the seed and the size.
CONTEXT_CHUNK = 64
CHUNK_ELEMENTS = 4096


def chunk_contexts(size: int) -> int:
    """How many contexts of `size` elements are generated at a time."""
    return max(1, min(CONTEXT_CHUNK, CHUNK_ELEMENTS // size))


def check_reset_options(options: dict | None) -> None:
    """The environments take no reset options: any key is refused rather than silently ignored
    (a `difficulty` that did nothing would skew whatever was measured with it)."""
    if options:
        keys = sorted(options) if isinstance(options, dict) else options
        raise ValueError(
            f"reset options {keys!r} are not supported: the episode is drawn from the seed alone"
        )


def check_render_mode(render_mode: str | None, allowed: Sequence[str]) -> str | None:
    if render_mode is not None and render_mode not in allowed:
        raise ValueError(f"render_mode must be one of {list(allowed)} or None, got {render_mode!r}")
    return render_mode


class EpisodeBatch:
    """n episodes of one task, stepped together.

    answerer: who answers non-simple subquestions (simple ones are always read off the context,
      malformed ones are always `?`):
      * "oracle-easier" (default): the ground truth when the subquestion is strictly easier than
        the episode's own question (`Task.easier_key`), else `?`. Forwarding the question scores 0.
      * "lookup-only": always `?`; only simple questions get answers.
      * "oracle": always the ground truth. For demonstrations and tests; it lets an agent score by
        forwarding its own question, so never use it to score a method.
      * a callable (facts, questions) -> answers: a learner X (batched; facts (M, F, Lf),
        questions (M, Lq) -> answers (M, La) or (M,), int tokens in the task's vocabulary).
    """

    def __init__(
        self,
        task: Task,
        num_episodes: int,
        answerer: str | Answerer = "oracle-easier",
        question_kinds: Sequence[str] | str | None = None,
        max_subquestions: int | None = None,
        subquestion_cost: float = 0.0,
    ) -> None:
        if not (isinstance(answerer, str) and answerer in ANSWERER_NAMES) and not callable(answerer):
            raise ValueError(
                f"answerer must be one of {list(ANSWERER_NAMES)} or a callable, got {answerer!r}"
            )
        budget = task.max_subquestions if max_subquestions is None else max_subquestions
        if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 0:
            raise ValueError(f"max_subquestions must be an integer >= 0, got {max_subquestions!r}")
        cost = float(subquestion_cost)
        if not np.isfinite(cost) or cost < 0:
            raise ValueError(f"subquestion_cost must be a finite number >= 0, got {subquestion_cost!r}")
        self.task = task
        self.n = num_episodes
        self.answerer = answerer
        self.kinds = task.check_kinds(question_kinds)
        self.budget = int(budget)
        self.cost = cost
        vocab = len(task.vocab)
        s, lq, la = self.budget, task.question_len, task.answer_len
        self.observation_space = spaces.Dict(
            {
                "facts": spaces.Box(0, vocab - 1, (task.max_facts, task.fact_len), np.int64),
                "question": spaces.Box(0, vocab - 1, (lq,), np.int64),
                "sub_questions": spaces.Box(0, vocab - 1, (s, lq), np.int64),
                "sub_answers": spaces.Box(0, vocab - 1, (s, la), np.int64),
                "num_asked": spaces.Discrete(s + 1),
            }
        )
        # action[0]: 0 = ask the subquestion action[1 : 1 + question_len],
        #            1 = answer action[1 : 1 + answer_len]
        self.token_slots = max(lq, la)
        self.action_space = spaces.MultiDiscrete([2] + [vocab] * self.token_slots)
        self._vocab = vocab
        # per-episode state
        self.ctx: Contexts | None = None
        self.questions = np.zeros((self.n, lq), np.int64)
        # the episode question's truth, difficulty, kind and easier-order key, fixed at reset
        self.truth = np.zeros((self.n, la), np.int64)
        self.difficulty = np.zeros(self.n, np.int64)
        self.kind = np.zeros(self.n, np.int64)
        self.question_key = np.zeros(self.n, np.int64)
        self.sub_questions = np.zeros((self.n, s, lq), np.int64)
        self.sub_answers = np.zeros((self.n, s, la), np.int64)
        self.num_asked = np.zeros(self.n, np.int64)
        self.final_answers = np.zeros((self.n, la), np.int64)
        self.done = np.ones(self.n, bool)
        self.correct = np.zeros(self.n, bool)
        self._pool: tuple[Contexts, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._pool_next = 0
        self._chunk = chunk_contexts(task.size)

    # -- episodes -------------------------------------------------------------------------------
    def clear_pool(self) -> None:
        self._pool, self._pool_next = None, 0

    def _refill(self, rng: np.random.Generator) -> None:
        """Draw the next chunk of episodes (contexts, questions and their truth) at once."""
        task = self.task
        ctx = task.generate(rng, self._chunk)
        local = np.arange(self._chunk)
        q = task.sample_questions(ctx, rng, self.kinds)
        difficulty, kind = task.difficulty(ctx, local, q), task.kind_of(q)
        self._pool = (ctx, q, task.ground_truth(ctx, local, q), difficulty, kind)
        self._pool_next = 0

    def reset(self, rng: np.random.Generator, rows: np.ndarray) -> None:
        """Start fresh episodes (new context, new question) in `rows`."""
        rows = np.asarray(rows, dtype=np.int64)
        start = 0
        while start < len(rows):
            if self._pool is None or self._pool_next >= self._chunk:
                self._refill(rng)
            assert self._pool is not None
            ctx, q, truth, difficulty, kind = self._pool
            take = min(len(rows) - start, self._chunk - self._pool_next)
            src = np.arange(self._pool_next, self._pool_next + take)
            dst = rows[start : start + take]
            self._pool_next += take
            start += take
            if self.ctx is None:  # first reset: allocate every row, then fill
                self.ctx = ctx.take(np.zeros(self.n, np.int64))
            self.ctx.put(dst, ctx, src)
            self.questions[dst] = q[src]
            self.truth[dst] = truth[src]
            self.difficulty[dst] = difficulty[src]
            self.kind[dst] = kind[src]
        self.question_key[rows] = self.difficulty[rows] * len(self.task.kinds) + self.kind[rows]
        self.sub_questions[rows] = 0
        self.sub_answers[rows] = 0
        self.num_asked[rows] = 0
        self.final_answers[rows] = 0
        self.done[rows] = False
        self.correct[rows] = False

    def check_actions(self, actions: np.ndarray) -> np.ndarray:
        a = np.asarray(actions)
        shape = (self.n, 1 + self.token_slots)
        if a.shape != shape or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(
                f"action {actions!r} is not in the action space {self.action_space}: "
                f"expected integers of shape {shape[1:] if self.n == 1 else shape}"
            )
        if a.min() < 0 or a[:, 0].max() > 1 or a.max() >= self._vocab:
            bad = (a[:, 0] < 0) | (a[:, 0] > 1) | np.any((a[:, 1:] < 0) | (a[:, 1:] >= self._vocab), axis=1)
            raise ValueError(
                f"action {a[bad][0].tolist()!r} is not in the action space {self.action_space}: "
                f"action[0] must be 0 (ask) or 1 (answer) and every token in [0, {self._vocab - 1}]"
            )
        return a.astype(np.int64, copy=False)

    def step(
        self, rng: np.random.Generator, actions: np.ndarray, rows: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Apply `actions` (n, 1 + token_slots) to the (running) episodes in `rows`.

        Returns rewards, terminated, truncated, each (n,); rows not in `rows` get 0 / False.
        """
        assert self.ctx is not None
        rewards = np.zeros(self.n, np.float64)
        terminated = np.zeros(self.n, bool)
        truncated = np.zeros(self.n, bool)
        kind = actions[rows, 0]
        # final answers
        ans = rows[kind == ANSWER]
        if len(ans):
            la = self.task.answer_len
            self.final_answers[ans] = actions[ans, 1 : 1 + la]
            ok = self.task.correct(
                self.ctx, ans, self.questions[ans], self.final_answers[ans], self.truth[ans]
            )
            self.correct[ans] = ok
            rewards[ans] = ok
            terminated[ans] = True
        # subquestions
        ask = rows[kind == ASK]
        over = ask[self.num_asked[ask] >= self.budget]
        truncated[over] = True
        ask = ask[self.num_asked[ask] < self.budget]
        if len(ask):
            lq = self.task.question_len
            subq = actions[ask, 1 : 1 + lq]
            answers = self.task.answer_subquestions(self.ctx, ask, subq, rng, self._answer_fn())
            slot = self.num_asked[ask]
            self.sub_questions[ask, slot] = subq
            self.sub_answers[ask, slot] = answers
            self.num_asked[ask] += 1
            rewards[ask] -= self.cost
        self.done |= terminated | truncated
        return rewards, terminated, truncated

    def _answer_fn(self) -> AnswerFn:
        task, ctx = self.task, self.ctx
        assert ctx is not None
        if self.answerer == "oracle":
            return lambda idx, q: task.ground_truth(ctx, idx, q)
        if self.answerer == "lookup-only":
            return lambda idx, q: np.full((len(q), task.answer_len), UNKNOWN, np.int64)
        if self.answerer == "oracle-easier":

            def oracle_easier(idx: np.ndarray, q: np.ndarray) -> np.ndarray:
                easier = task.easier_key(ctx, idx, q) < self.question_key[idx]
                return np.where(easier[:, None], task.ground_truth(ctx, idx, q), UNKNOWN)

            return oracle_easier
        learner = self.answerer
        assert callable(learner)

        def learned(idx: np.ndarray, q: np.ndarray) -> np.ndarray:
            out = np.asarray(learner(ctx.facts[idx], q))
            if out.ndim == 1:
                out = out[:, None]
            want = (len(q), task.answer_len)
            if out.shape != want or not np.issubdtype(out.dtype, np.integer):
                raise ValueError(
                    f"answerer returned {out.dtype} array of shape {out.shape}; expected int {want}"
                )
            if out.min(initial=0) < 0 or out.max(initial=0) >= self._vocab:
                raise ValueError(f"answerer returned tokens outside the vocabulary [0, {self._vocab - 1}]")
            return out.astype(np.int64, copy=False)

        return learned

    # -- views ----------------------------------------------------------------------------------
    def observation(self, rows: np.ndarray | slice = slice(None)) -> dict[str, np.ndarray]:
        assert self.ctx is not None
        return {
            "facts": self.ctx.facts[rows],
            "question": self.questions[rows],
            "sub_questions": self.sub_questions[rows],
            "sub_answers": self.sub_answers[rows],
            "num_asked": self.num_asked[rows],
        }

    def end_info(self, row: int) -> dict[str, object]:
        """What `info` reveals once an episode is over."""
        return {
            "ground_truth": self.truth[row].copy(),
            "is_correct": bool(self.correct[row]),
            "difficulty": int(self.difficulty[row]),
            "question_kind": self.task.kinds[self.kind[row]],
        }

    def render(self, row: int) -> str:
        if self.ctx is None:
            raise RuntimeError("call reset() before render()")
        t = self.task
        facts = [t.render_fact(f) for f in self.ctx.facts[row] if f.any()]
        lines = [f"{t.name} (size {t.size}): {len(facts)} facts", "  " + "; ".join(facts)]
        lines.append(f"Question: {t.render_question(self.questions[row])}")
        for i in range(int(self.num_asked[row])):
            q, a = self.sub_questions[row, i], self.sub_answers[row, i]
            lines.append(f"  {i + 1}. ask {t.render_question(q)}  ->  {t.render_answer(a)}")
        if self.done[row]:
            if self.correct[row] or self.final_answers[row].any():
                verdict = "correct" if self.correct[row] else "wrong"
                lines.append(f"Answer: {t.render_answer(self.final_answers[row])} ({verdict})")
            else:
                lines.append("Episode over (subquestion budget exhausted).")
        return "\n".join(lines)
