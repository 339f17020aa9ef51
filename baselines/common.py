"""What every learning method shares: the run configuration, question sampling with a difficulty
curriculum, the replay buffer, turning the model into an answerer, and evaluation on a fixed
held-out test set."""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from amp_envs.tasks import TASKS, Contexts, Task, make_task
from amp_envs.tasks.base import UNKNOWN, ExpertProgram, Transcripts
from baselines.model import Answerer, ModelConfig
from baselines.validation import check_fields, check_range, float_where_default_is, normalise_floats

EVAL_SEED = 1810_08575  # the held-out test set's seed (the paper's arXiv number), never trained on


# settings that say how a run is budgeted in time, checkpointed or placed, not what it learns:
# left out of its name (`baselines.run.config_id`), and free to change when it resumes
RESUMABLE_CHANGES = ("max_minutes", "checkpoint_every", "threads", "device")


def differing_settings(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The settings (but `RESUMABLE_CHANGES`) in which two configs, as dicts, differ: what keeps a
    checkpoint from resuming a run or from standing for a result's run."""
    keys = (recorded.keys() | current.keys()) - set(RESUMABLE_CHANGES)
    return sorted(k for k in keys if recorded.get(k) != current.get(k))


CURRICULA = ("auto", "difficulty", "size", "both", "none")
LR_SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    """Hyperparameters shared by every method (each method's file extends this dataclass).

    A setting added here later must default to the behaviour from before it existed, or be listed
    in `BEFORE_ADDED` with the value that reproduces that behaviour: result files written earlier
    lack it, and are read as having trained with that value."""

    BEFORE_ADDED: ClassVar[dict[str, Any]] = {"curriculum_oversample": 16, "device": "cpu"}

    task: str = "PermutationPower"
    size: int = 8
    seed: int = 0
    steps: int = 3000  # optimiser steps (the budget; a run also stops at --max-minutes)
    max_minutes: float = 0.0  # wall-clock budget; 0 = none
    batch_contexts: int = 32  # contexts per training batch...
    questions_per_context: int = 32  # ...and questions asked of each (the context is encoded once)
    lr: float = 1e-3
    lr_warmup: int = 100
    # "constant" after warmup, or "cosine": decay to lr_final_fraction * lr at `steps` (a run with
    # a fixed step budget ends sharper; the step budget then shapes training and names the run)
    lr_schedule: str = "constant"
    lr_final_fraction: float = 0.05
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    model: str = "small"  # ModelConfig preset
    model_overrides: dict[str, Any] = field(default_factory=dict)
    # "difficulty", "size" (the paper's), "both" (difficulty levels, then size), "none", or
    # "auto": difficulty where the task's difficulty is read off the question alone, else size
    curriculum: str = "auto"
    curriculum_start: int = 1  # first difficulty level (questions of difficulty <= level)
    curriculum_start_size: int = 4  # "size", "both": contexts start this large and grow by one
    curriculum_threshold: float = 0.85  # advance when agreement on the newest level exceeds it
    curriculum_min_steps: int = 25  # ...and at least this many steps were spent on it
    # "difficulty": candidates drawn per question slot, the easiest kept. At 16, permutation
    # powering's first level (k = 2, 3: 2 in 62 candidates) filled only about half its slots,
    # the rest were harder questions whose amplified targets are still garbage
    curriculum_oversample: int = 64
    eval_every: int = 100
    eval_contexts: int = 64
    eval_questions_per_context: int = 16
    checkpoint_every: int = 250
    threads: int = 2
    # where X trains: "cpu", or "cuda" / "cuda:N" (an option for whoever has a GPU; every number
    # in this project is measured on the CPU, where seeded runs are reproducible; on a GPU they
    # need not be). The task engine and the expert run on the CPU either way.
    device: str = "cpu"

    def __post_init__(self) -> None:
        normalise_floats(self)
        # every model setting is written out, so a result file names exactly the model it trained
        # (and a change of a preset's defaults cannot pass for the same configuration)
        if (
            isinstance(self.model_overrides, dict)
            and isinstance(self.model, str)
            and self.model in ModelConfig.PRESETS
        ):
            preset = dataclasses.asdict(ModelConfig.preset(self.model))
            overrides = {k: float_where_default_is(v, preset.get(k)) for k, v in self.model_overrides.items()}
            self.model_overrides = {**preset, **overrides}

    def model_config(self) -> ModelConfig:
        if not isinstance(self.model_overrides, dict):
            raise ValueError(f"model_overrides must be a JSON object, got {self.model_overrides!r}")
        cfg = ModelConfig.preset(self.model)
        for key, value in self.model_overrides.items():
            if not hasattr(cfg, key):
                known = ", ".join(f.name for f in dataclasses.fields(ModelConfig))
                raise ValueError(f"unknown model setting {key!r} (known: {known})")
            setattr(cfg, key, value)
        cfg.validate()
        return cfg

    def check(self) -> None:
        """ValueError naming the first setting with a wrong type or an out-of-range value (what
        does not depend on this machine: `validate` also checks the device)."""
        check_fields(self)
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose from {sorted(TASKS)}")
        low, high = TASKS[self.task].min_size, TASKS[self.task].max_size_limit
        check_range(self, "size", low, high)
        check_range(self, "seed", 0)
        for name in (
            "steps",
            "batch_contexts",
            "questions_per_context",
            "eval_every",
            "checkpoint_every",
            "eval_contexts",
            "eval_questions_per_context",
            "threads",
            "curriculum_oversample",
        ):
            check_range(self, name, 1)
        for name in ("lr_warmup", "weight_decay", "max_minutes", "curriculum_start", "curriculum_min_steps"):
            check_range(self, name, 0)
        check_range(self, "lr", 0, 10, open_low=True)  # Adam beyond 10 only diverges (1e38 overflows)
        check_range(self, "grad_clip", 0, open_low=True)
        check_range(self, "lr_final_fraction", 0, 1)
        check_range(self, "curriculum_threshold", 0, 1, open_low=True)
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.curriculum not in CURRICULA:
            raise ValueError(f"curriculum must be one of {list(CURRICULA)}, got {self.curriculum!r}")
        if self.curriculum in ("size", "both") and not 2 <= self.curriculum_start_size <= self.size:
            raise ValueError(f"curriculum_start_size must be in [2, size={self.size}]")
        self.model_config()

    def validate(self) -> None:
        """`check`, and that the device exists here."""
        self.check()
        check_device(self.device)

    def lr_factor(self, step: int) -> float:
        """The learning rate at optimiser step `step`, as a fraction of `lr`."""
        warm = min(1.0, (step + 1) / max(1, self.lr_warmup))
        if self.lr_schedule == "constant":
            return warm
        progress = min(1.0, max(0, step - self.lr_warmup) / max(1, self.steps - self.lr_warmup))
        final = self.lr_final_fraction
        return warm * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress)))

    def make_task(self) -> Task:
        return make_task(self.task, self.size)

    def curriculum_mode(self, task: Task) -> str:
        if self.curriculum == "auto":
            return "difficulty" if task.difficulty_from_question else "size"
        return self.curriculum


def check_device(device: str) -> torch.device:
    """`device` as a torch device, or a ValueError naming what is wrong with it."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from error
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but torch sees no CUDA GPU here")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: torch sees {torch.cuda.device_count()} GPU(s)")
    return dev


def build_model(cfg: TrainConfig, task: Task) -> Answerer:
    """X, initialised on the CPU (so a seed gives the same weights on every device), then moved
    to `cfg.device`."""
    model = Answerer(cfg.model_config(), len(task.vocab), task.fact_len, task.question_len)
    return model.to(cfg.device)


class Curriculum:
    """What the learner trains on grows as it masters it. `update` takes, for the questions of a
    batch, whether the learner agreed with its target (ground truth or amplified answer).

    * "difficulty": questions of difficulty <= level (the task's natural distribution restricted
      to it). When the running agreement on the newest level exceeds the threshold, after a
      minimum number of steps there, the level goes up by one; once it reaches the hardest
      difficulty seen so far, questions are drawn unrestricted.
    * "size" (the paper's): contexts of `size` elements, growing by one up to the run's size
      whenever the running agreement on all questions exceeds the threshold.
    * "both": "difficulty" at the start size, then "size" once questions are unrestricted (a
      larger context's harder questions, where a task has them, bring the difficulty cap back).
      For tasks whose hard questions cannot be learned at once at any size (permutation
      powering: the size curriculum alone stayed at chance, drawing every k from the start).
    * "none": the run's size, unrestricted questions.
    """

    def __init__(self, cfg: TrainConfig, task: Task) -> None:
        self.mode = cfg.curriculum_mode(task)
        self.level = cfg.curriculum_start
        self.size = min(cfg.curriculum_start_size, cfg.size) if self.grows_size else cfg.size
        self.final_size = cfg.size
        self.threshold = cfg.curriculum_threshold
        self.min_steps = cfg.curriculum_min_steps
        self.agreement = 0.0
        self.steps_at_level = 0
        self.max_seen = -1  # the hardest difficulty among drawn candidates; -1: none drawn yet

    @property
    def max_difficulty(self) -> int | None:
        """The difficulty cap for the next batch (None: unrestricted)."""
        if not self.uses_difficulty or (0 <= self.max_seen <= self.level):
            return None
        return self.level

    @property
    def uses_difficulty(self) -> bool:
        """Whether questions are capped by difficulty (so it must be computed for every batch)."""
        return self.mode in ("difficulty", "both")

    @property
    def grows_size(self) -> bool:
        """Whether contexts start small and grow to the run's size."""
        return self.mode in ("size", "both")

    @property
    def growing(self) -> bool:
        return self.max_difficulty is not None or self.size < self.final_size

    def describe(self) -> str:
        level = "all" if self.max_difficulty is None else str(self.level)
        if self.mode == "size":
            return f"n={self.size}"
        return f"n={self.size} {level}" if self.mode == "both" else level

    def update(self, agree: np.ndarray, difficulty: np.ndarray, hardest_drawn: int = 0) -> None:
        """`difficulty` of the batch's questions (only read while questions are capped by it) and the hardest
        difficulty among all candidates drawn for it (see `draw_questions`)."""
        self.max_seen = max(self.max_seen, hardest_drawn)
        capped = self.max_difficulty is not None
        if self.mode == "difficulty" or capped:
            watched = difficulty == min(self.level, int(difficulty.max(initial=0)))
        else:
            watched = np.ones(len(agree), dtype=bool)
        if watched.any():
            self.agreement = 0.9 * self.agreement + 0.1 * float(agree[watched].mean())
        self.steps_at_level += 1
        if self.growing and self.steps_at_level >= self.min_steps and self.agreement > self.threshold:
            if self.mode == "size" or (self.mode == "both" and not capped):
                self.size += 1
            else:
                self.level += 1
            self.steps_at_level = 0
            self.agreement = 0.0

    def state_dict(self) -> dict[str, Any]:
        keys = ("level", "size", "agreement", "steps_at_level", "max_seen")
        return {k: getattr(self, k) for k in keys}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def draw_questions(
    task: Task,
    ctx: Contexts,
    rng: np.random.Generator,
    per_context: int,
    max_difficulty: int | None = None,
    oversample: int = TrainConfig.curriculum_oversample,
    with_difficulty: bool = True,
    kinds: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """`per_context` episode questions for every context, at most `max_difficulty` hard where
    possible (the easiest of `oversample` times as many candidates otherwise), of `kinds`
    (default: the task's main kinds).

    Returns ctx_idx (B * per_context,), questions (B * per_context, Lq), their difficulty and
    the hardest difficulty among all candidates. With `with_difficulty=False` (and no cap) the
    task's difficulty is not computed at all (zeros are returned): the data path of Iterated
    Amplification uses that where difficulty would reveal something about the answers."""
    b = len(ctx)
    tries = 1 if max_difficulty is None else oversample
    idx = np.repeat(np.arange(b), per_context * tries)
    q = task.sample_questions(ctx, rng, kinds, ctx_idx=idx)
    if max_difficulty is None and not with_difficulty:
        return idx, q, np.zeros(len(q), np.int64), 0
    difficulty = task.difficulty(ctx, idx, q)
    hardest = int(difficulty.max(initial=0))
    if tries > 1:
        over = np.maximum(difficulty - max_difficulty, 0)
        key = (over + rng.random(len(q))).reshape(b, -1)  # allowed ones first, in random order
        pick = np.argsort(key, axis=1)[:, :per_context] + (np.arange(b) * per_context * tries)[:, None]
        pick = pick.reshape(-1)
        idx, q, difficulty = idx[pick], q[pick], difficulty[pick]
    return idx, q, difficulty, hardest


class ReplayBuffer:
    """A ring buffer of (facts, questions, targets) grouped by context, so a sampled batch keeps
    the many-questions-per-context layout the model is fast on."""

    def __init__(self, capacity: int, facts_shape: tuple[int, int], per_context: int, question_len: int):
        self.capacity = capacity
        self.facts = np.zeros((capacity, *facts_shape), np.int64)
        self.questions = np.zeros((capacity, per_context, question_len), np.int64)
        self.targets = np.zeros((capacity, per_context), np.int64)
        self.difficulty = np.zeros((capacity, per_context), np.int64)
        self.size = 0
        self.next = 0

    def add(
        self, facts: np.ndarray, questions: np.ndarray, targets: np.ndarray, difficulty: np.ndarray
    ) -> None:
        for i in range(len(facts)):
            j = self.next
            self.facts[j], self.questions[j], self.targets[j] = facts[i], questions[i], targets[i]
            self.difficulty[j] = difficulty[i]
            self.next = (j + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)

    def sample(self, rng: np.random.Generator, batch: int) -> tuple[np.ndarray, ...]:
        j = rng.integers(0, self.size, batch)
        return self.facts[j], self.questions[j], self.targets[j], self.difficulty[j]

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("facts", "questions", "targets", "difficulty", "size", "next")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


@torch.no_grad()
def predict(model: Answerer, facts: np.ndarray, questions: np.ndarray) -> np.ndarray:
    """The model's answer tokens (B, Q) to questions (B, Q, Lq) about facts (B, F, Lf)."""
    check_shapes_for(model, facts, questions)
    was_training = model.training
    model.eval()
    try:
        return model(torch.from_numpy(facts), torch.from_numpy(questions)).argmax(-1).cpu().numpy()
    finally:
        model.train(was_training)


def check_shapes_for(model: Answerer, facts: np.ndarray, questions: np.ndarray) -> None:
    """ValueError if the facts or questions are not what `model` was built for: a token beyond its
    vocabulary (a task made at a larger size than the model's) or rows of another length."""
    top = max(int(facts.max(initial=0)), int(questions.max(initial=0)))
    if top >= model.vocab_size:
        raise ValueError(
            f"token {top} is beyond this model's vocabulary of {model.vocab_size}: it was built for a task "
            "of a smaller (max_)size than the one asked"
        )
    if facts.shape[-1] != model.fact_len:
        raise ValueError(
            f"facts of length {facts.shape[-1]}, this model reads facts of length {model.fact_len}"
        )


class ModelAnswerer:
    """X as an environment's `answerer`: a batched callable (facts, questions) -> answers.

    env = gym.make("Amp/PermutationPower-v0", size=8, answerer=ModelAnswerer(model))
    """

    def __init__(self, model: Answerer) -> None:
        self.model = model

    def __call__(self, facts: np.ndarray, questions: np.ndarray) -> np.ndarray:
        # one question per context: (M, F, Lf) and (M, 1, Lq)
        return predict(self.model, facts, questions[:, None, :])[:, :1].astype(np.int64)


def choose(logp: torch.Tensor, rng: np.random.Generator, temperature: float = 0.0) -> np.ndarray:
    """Answer tokens from log-probabilities (..., vocab): the most likely (temperature 0), or a
    sample from softmax(logp / temperature) drawn with `rng` (Gumbel-max), so runs stay seeded.
    Temperature 0 draws nothing from `rng`."""
    lp = logp.detach().cpu().numpy()
    if temperature <= 0:
        return lp.argmax(-1)
    gumbel = -np.log(-np.log(rng.random(lp.shape)))
    return (lp / temperature + gumbel).argmax(-1)


class FactsAndLookups:
    """All that Amplify^H gets of a batch of contexts: the facts a learner sees, and the
    environment's answers to subquestions, in which every question that is not simple gets the
    learner's answer (`learned` is required). It keeps no answer table and no way to call
    `ground_truth`, so targets built through it cannot depend on the true answers: this is what
    makes IA's data path blind to them by construction, not by care."""

    def __init__(self, task: Task, ctx: Contexts) -> None:
        self.facts = ctx.facts

        def answer(ctx_idx: np.ndarray, questions: np.ndarray, rng: np.random.Generator, learned: np.ndarray):
            return task.answer_subquestions(ctx, ctx_idx, questions, rng, learned=learned)

        self._answer = answer

    def __len__(self) -> int:
        return len(self.facts)

    def answer(
        self, ctx_idx: np.ndarray, questions: np.ndarray, rng: np.random.Generator, learned: np.ndarray
    ) -> np.ndarray:
        """(M, La): simple questions read off one fact, malformed ones `?`, the rest `learned`."""
        if learned is None or len(learned) != len(questions):
            raise ValueError("FactsAndLookups.answer needs the learner's answer (M, La) for every question")
        return self._answer(ctx_idx, questions, rng, learned)


@torch.no_grad()
def amplify_transcripts(
    task: Task,
    model: Answerer,
    view: FactsAndLookups,
    questions: np.ndarray,
    rng: np.random.Generator,
    expert: Callable[[np.ndarray], ExpertProgram] | None = None,
    temperature: float = 0.0,
) -> Transcripts:
    """Amplify^H(X) with its transcripts: `expert` (default H, `task.expert`; a learned H' plugs
    in here) decomposes each question; simple subquestions are read off the context, the others
    are answered by `model`. Questions are (B * Q, Lq), Q per context in order.

    Never reads the ground truth: the expert sees only questions and answers, and the contexts
    are seen only through `view` (see `FactsAndLookups`)."""
    if not isinstance(view, FactsAndLookups):
        got = type(view).__name__
        raise TypeError(f"amplify reads contexts through FactsAndLookups(task, ctx), got {got}")
    b = len(view)
    q_per = len(questions) // b
    m, s = len(questions), task.max_subquestions
    ctx_idx = np.repeat(np.arange(b), q_per)
    facts = torch.from_numpy(view.facts)
    sub_questions = np.zeros((m, s, task.question_len), np.int64)
    sub_answers = np.zeros((m, s, task.answer_len), np.int64)
    num_sub = np.zeros(m, np.int64)
    was_training = model.training
    model.eval()
    try:
        memory = model.encode(facts)
        program = (task.expert if expert is None else expert)(questions)
        asked, sub = next(program)
        while True:
            if (asked & ~task.is_simple(sub)).any():
                sub_t = torch.from_numpy(sub.reshape(b, q_per, -1))
                learned = choose(model.decode(memory, facts, sub_t), rng, temperature).reshape(-1, 1)
            else:  # every subquestion asked is a lookup: X has nothing to answer
                learned = np.full((m, 1), UNKNOWN, np.int64)
            answers = view.answer(ctx_idx, sub, rng, learned)
            rows = np.flatnonzero(asked)
            if len(rows) and num_sub[rows].max() >= s:
                raise RuntimeError(f"{task.name}: the expert asked more than {s} subquestions")
            sub_questions[rows, num_sub[rows]] = sub[rows]
            sub_answers[rows, num_sub[rows]] = answers[rows]
            num_sub[rows] += 1
            asked, sub = program.send(answers)
    except StopIteration as stop:
        final = np.asarray(stop.value, dtype=np.int64).reshape(m, task.answer_len)
        return Transcripts(questions, sub_questions, sub_answers, num_sub, final)
    finally:
        model.train(was_training)


def amplify(
    task: Task,
    model: Answerer,
    view: FactsAndLookups,
    questions: np.ndarray,
    rng: np.random.Generator,
    expert: Callable[[np.ndarray], ExpertProgram] | None = None,
    temperature: float = 0.0,
) -> tuple[np.ndarray, int]:
    """Amplify^H(X) (see `amplify_transcripts`): the answers (B * Q,) and the number of
    subquestions asked. With `temperature` > 0 the model's subanswers are sampled (Expert
    Iteration searches over these)."""
    t = amplify_transcripts(task, model, view, questions, rng, expert, temperature)
    return t.answers.reshape(-1), int(t.num_sub.sum())


@dataclass
class EvalSet:
    """The fixed held-out test set of a task and size: same seed for every method and run."""

    task: Task
    ctx: Contexts
    ctx_idx: np.ndarray
    questions: np.ndarray
    difficulty: np.ndarray

    @classmethod
    def build(cls, task: Task, contexts: int = 64, per_context: int = 16) -> EvalSet:
        rng = np.random.default_rng([EVAL_SEED, zlib.crc32(task.name.encode()), task.size])
        ctx = task.generate(rng, contexts)
        idx = np.repeat(np.arange(contexts), per_context)
        q = task.sample_questions(ctx, rng, ctx_idx=idx)
        return cls(task, ctx, idx, q, task.difficulty(ctx, idx, q))

    def evaluate(self, model: Answerer, batch_contexts: int = 64) -> dict[str, Any]:
        """Exact-answer accuracy overall and per difficulty class."""
        b = len(self.ctx)
        per = len(self.questions) // b
        answers = np.concatenate(
            [
                predict(
                    model,
                    self.ctx.facts[i : i + batch_contexts],
                    self.questions.reshape(b, per, -1)[i : i + batch_contexts],
                ).reshape(-1)
                for i in range(0, b, batch_contexts)
            ]
        )
        ok = self.task.correct(self.ctx, self.ctx_idx, self.questions, answers[:, None])
        per_difficulty = {
            int(d): {
                "accuracy": float(ok[self.difficulty == d].mean()),
                "count": int((self.difficulty == d).sum()),
            }
            for d in np.unique(self.difficulty)
        }
        unknown = float((answers == UNKNOWN).mean())
        return {"accuracy": float(ok.mean()), "per_difficulty": per_difficulty, "unknown_rate": unknown}
