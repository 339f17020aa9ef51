"""Iterated Amplification with a learned expert H' (the paper's full setting).

In the paper H stands for a human: expensive, so H only gives demonstrations of how it decomposes
questions, and a second model H' learns to imitate them. X's targets then come from
Amplify^{H'}(X'): H' decomposes every training question, simple subquestions are read off the
context, the others are answered by X'. X and H' train side by side; H itself is only ever called
through `DemoBudget`, which counts every question it decomposes and refuses to go past `--demos`.

A demonstration is one transcript of H, with X' answering its subquestions (as in the paper).
`--demo-schedule` says when H gives them: "steady" (the default: `--demos-per-step` at every
step until the budget is spent, so later demonstrations are answered by a better X'), "upfront"
(all before the first step, answered by an untrained X': H' then rarely sees a real answer to
copy, and learns H badly), "curriculum" (an equal share at the start and at every advance of
the curriculum, answered by the X' of that time, and whatever is left once the curriculum is
complete) or "paced" (the curriculum's shares, each given at `--demos-per-step` per step from
the level it belongs to on: "steady" spends the whole budget in its first steps, before the
questions of later levels, with their larger numbers and longer transcripts, exist; measured,
3 minutes, seed 0: wildcard search at size 16, X 70% -> 97%; union find at size 8, 69% -> 37%,
its first share being answered by a young X', as with "curriculum").
`--demo-questions` says which questions H demonstrates on: "all" (the default: the whole
question distribution at the full context size, whatever X's curriculum) or "curriculum" (the
questions of X's current level and size, the behaviour before the option existed: H' then only
learns the decompositions of the levels reached while demonstrations last, e.g. permutation
powering's k <= 3 with "steady", and gives the later levels targets it never saw H make).
Measured at size 8, seed 0, "steady" 20,000 demonstrations: see the README.
Measured on union find, size 8, 20,000 demonstrations, 500 steps: "curriculum" gave
H' 0% of held-out `parent` transcripts and 35% of `depth` ones (X at 39%); "steady" (40 per
step) 100% and 100% (X at 84%).

H' sees exactly what H sees: the question, its subquestions and their answers, never the facts.
A transcript is a sequence of records, each `question_len + answer_len` tokens wide:

    record 0:  the question               PAD
    record i:  H's i-th subquestion       its answer       (i = 1 .. n <= max_subquestions)

H' is a causal Transformer over records (one vector per record, like X's facts). After reading
records 0..r it says whether to stop; if not, the whole next subquestion (each of its tokens by
a vocabulary softmax mixed with a pointer that copies any earlier transcript token: element
names are per-episode labels, so "pow k//2 y" copies y out of the previous answer); if so, the
final answer (the same mixture). H is deterministic given the transcript so far, so predicting
a subquestion's tokens independently of each other loses nothing, and decoding costs one forward
pass per subquestion rather than one per token. Attention and pointer get token-equality
features between records (which records mention the same element) and the records' distance.
With `expert_successor`, every output also mixes in a second pointer that outputs the successor
of the number it points at: H answers "d + 1" (a depth, a distance) for whatever d X' gave, and a
vocabulary softmax can only learn that number by number, from demonstrations that happen to
contain each d (measured on union find, size 8, "steady" as above: `depth` transcripts 93%
without it, 100% with it).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from amp_envs.tasks import Task
from amp_envs.tasks.base import PAD, UNKNOWN, ExpertProgram, Transcripts
from baselines import iterated_amplification
from baselines.common import EVAL_SEED, FactsAndLookups, amplify_transcripts, draw_questions
from baselines.iterated_amplification import IAConfig
from baselines.model import MATCH_SCALE, Answerer, Block, ModelConfig, Pointer, copy_mixture, token_matches
from baselines.trainer import Trainer

DEMO_SCHEDULES = ("upfront", "curriculum", "steady", "paced")
DEMO_QUESTIONS = ("curriculum", "all")


@dataclass
class LearnedHConfig(IAConfig):
    demos: int = 20_000  # the budget: transcripts H provides over the whole run
    demo_schedule: str = "steady"  # "steady", "paced", "upfront" or "curriculum" (module docstring)
    demos_per_step: int = 64  # "steady" and "paced": demonstrations per training step
    # the questions H demonstrates on: "curriculum" (those of X's current curriculum level and
    # context size) or "all" (the whole question distribution at the full size, whatever the
    # curriculum; see the module docstring)
    demo_questions: str = "all"
    expert_d_model: int = 64  # H' (the paper's: width 128, depth 4; this learns as well, cheaper)
    expert_layers: int = 2
    expert_heads: int = 4
    expert_lr: float = 3e-3
    expert_batch: int = 128  # demonstrations per H' optimiser step
    expert_steps: int = 1  # H' optimiser steps per training step
    # H' steps on the first demonstrations before any target comes from it (an untrained H' gives
    # garbage but consistent targets, which X can agree with and so advance the curriculum)
    expert_warmup: int = 100
    expert_eval_questions: int = 512  # held-out H transcripts H' is scored on (never trained on)
    expert_successor: bool = True  # H' can point at a number and output its successor (see above)

    # settings added after results were published, with the value they had before (see TrainConfig)
    BEFORE_ADDED: ClassVar[dict[str, Any]] = {
        **IAConfig.BEFORE_ADDED,
        "expert_successor": False,
        "demo_questions": "curriculum",
    }

    def check(self) -> None:
        super().check()
        if self.demos < 1:
            raise ValueError(f"demos must be >= 1, got {self.demos!r}")
        if self.demo_schedule not in DEMO_SCHEDULES:
            raise ValueError(
                f"demo_schedule must be one of {list(DEMO_SCHEDULES)}, got {self.demo_schedule!r}"
            )
        if self.demo_questions not in DEMO_QUESTIONS:
            raise ValueError(
                f"demo_questions must be one of {list(DEMO_QUESTIONS)}, got {self.demo_questions!r}"
            )
        if self.expert_warmup < 0:
            raise ValueError(f"expert_warmup must be >= 0, got {self.expert_warmup!r}")
        for name in (
            "expert_layers",
            "expert_batch",
            "expert_steps",
            "expert_eval_questions",
            "demos_per_step",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")

    def expert_model_config(self) -> ModelConfig:
        return ModelConfig(
            d_model=self.expert_d_model,
            n_heads=self.expert_heads,
            encoder_layers=self.expert_layers,
            decoder_layers=0,
            d_ff=2 * self.expert_d_model,
        )


# -- transcripts as records ------------------------------------------------------------------------
def to_records(task: Task, t: Transcripts) -> np.ndarray:
    """(M, max_subquestions + 1, question_len + answer_len) records of H's transcripts."""
    m, lq = len(t.questions), task.question_len
    records = np.zeros((m, task.max_subquestions + 1, lq + task.answer_len), np.int64)
    records[:, 0, :lq] = t.questions
    records[:, 1:, :lq] = t.sub_questions
    records[:, 1:, lq:] = t.sub_answers
    return records


class ExpertModel(nn.Module):
    """H': `forward(records)` gives, after each record r, the stop logit (B, R), the next
    subquestion's log-probabilities (B, R, Lq, V) and the final answer's (B, R, V)."""

    def __init__(self, cfg: ModelConfig, task: Task, successor: bool = False) -> None:
        super().__init__()
        d, v = cfg.d_model, len(task.vocab)
        self.lq, self.width, self.max_records = (
            task.question_len,
            task.question_len + task.answer_len,
            (task.max_subquestions + 1),
        )
        assert task.answer_len == 1, "H' predicts one-token answers"
        w, r = self.width, self.max_records
        self.embed = nn.Embedding(v, d)
        self.role = nn.Parameter(torch.randn(w, d) * 0.02)  # role of a token in its record
        self.position = nn.Parameter(torch.randn(r, d) * 0.02)  # the record's place in the transcript
        self.mix = nn.Linear(w * d, d)
        match_features = w * w + r  # token equality between two records, and their distance
        self.blocks = nn.ModuleList(Block(cfg, match_features) for _ in range(cfg.encoder_layers))
        self.norm = nn.LayerNorm(d)
        self.stop = nn.Linear(d, 1)
        self.slots = nn.Linear(d, self.lq * d)  # one query per token of the next subquestion
        self.slot_norm = nn.LayerNorm(d)
        self.vocab_head = nn.Linear(d, v)
        self.pointer_key = nn.Linear(d, d)
        self.pointers = nn.ModuleList(Pointer(d, match_features, w) for _ in range(self.lq + 1))
        self.successor_pointers = None
        if successor:  # a second pointer per output: "the number at this token, plus one"
            self.successor_pointers = nn.ModuleList(Pointer(d, match_features, w) for _ in range(self.lq + 1))
            self.register_buffer("successor", torch.from_numpy(task.vocab.successor_tokens()))
        # distance[i, j] one-hot of i - j for j <= i: "the previous answer" is one feature away
        dist = torch.arange(r)[:, None] - torch.arange(r)[None, :]
        self.register_buffer("distance", F.one_hot(dist.clamp(min=0), r).float() * (dist >= 0)[..., None])
        self.apply(Answerer._init)

    def forward(
        self, records: torch.Tensor, last_only: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`last_only`: the outputs after the last record only (decoding), R read as 1 above."""
        b, r, w = records.shape
        tokens = self.embed(records) + self.role  # (B, R, W, d)
        x = self.mix(tokens.reshape(b, r, -1)) + self.position[:r]
        causal = torch.ones(r, r, dtype=torch.bool).tril()
        match = torch.cat(
            [token_matches(records, records), (self.distance[:r, :r] * MATCH_SCALE).expand(b, -1, -1, -1)], -1
        )
        for block in self.blocks:
            x = block(x, x, causal.expand(b, r, r), match)
        x = self.norm(x)
        keys = self.pointer_key(tokens + x[:, :, None, :]).reshape(b, r * w, -1)
        flat = records.reshape(b, r * w)
        hidden = (flat == PAD)[:, None, :] | ~causal.repeat_interleave(w, dim=1)[None]  # (B, R, R * W)
        if last_only:
            x, match, hidden, r = x[:, -1:], match[:, -1:], hidden[:, -1:], 1
        queries = self.slot_norm(F.gelu(self.slots(x)).view(b, r, self.lq, -1))
        queries = torch.cat([queries, x[:, :, None, :]], dim=2)  # and the final answer's: x itself
        never = float("-inf")
        logits = all_pointers(self.pointers, queries, keys, match).masked_fill(hidden[:, :, None], never)
        sources = flat  # the token each pointer position outputs
        if self.successor_pointers is not None:
            successor = self.successor[flat]
            sources = torch.cat([flat, successor], dim=-1)
            hidden_successor = hidden | (successor == PAD)[:, None, :]
            plus_one = all_pointers(self.successor_pointers, queries, keys, match)
            logits = torch.cat([logits, plus_one.masked_fill(hidden_successor[:, :, None], never)], -1)
        out = copy_mixture(self.vocab_head(queries).flatten(1, 2), logits.flatten(1, 2), sources)
        out = out.view(b, r, self.lq + 1, -1)
        return self.stop(x).squeeze(-1), out[:, :, : self.lq], out[:, :, self.lq]


def all_pointers(
    pointers: nn.ModuleList, queries: torch.Tensor, keys: torch.Tensor, match: torch.Tensor
) -> torch.Tensor:
    """`Pointer` j applied to queries[:, :, j] for every j at once (B, R, J, R' * W): the same
    sums as one call each, in a few batched products (H' has one small pointer per output token;
    one call each made an H' optimiser step 1.1-1.4x slower)."""
    b, r, j, d = queries.shape
    weight = torch.stack([p.query.weight for p in pointers])  # (J, d, d)
    bias = torch.stack([p.query.bias for p in pointers])  # (J, d)
    q = torch.einsum("brjd,jed->brje", queries, weight) + bias
    logits = torch.einsum("brjd,bpd->brjp", q, keys) / math.sqrt(d)
    by_match = torch.einsum("brsf,jwf->brjsw", match, torch.stack([p.match.weight for p in pointers]))
    return logits + by_match.reshape(b, r, j, -1)


def score(
    model: ExpertModel, records: torch.Tensor, num_sub: torch.Tensor, final: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Teacher-forced loss on H's transcripts, and what H' would do at each of H's steps:
    `ok` (B, R) where H' does exactly what H did (stop or not, the whole next subquestion, the
    final answer), `live` (B, R) the steps H took, and the kinds of mistakes."""
    stop_logit, sub_logp, final_logp = model(records)
    b, r = stop_logit.shape
    steps = torch.arange(r)[None, :]
    live = steps <= num_sub[:, None]
    asks = steps < num_sub[:, None]  # H asked subquestion r + 1 after reading record r
    ends = steps == num_sub[:, None]
    rows = torch.arange(b)
    loss = F.binary_cross_entropy_with_logits(stop_logit[live], ends[live].float())
    target = records[:, 1:, : model.lq]
    loss = loss + F.nll_loss(sub_logp[:, :-1][asks[:, :-1]].flatten(0, -2), target[asks[:, :-1]].flatten())
    final_logp = final_logp[rows, num_sub]
    loss = loss + F.nll_loss(final_logp, final)
    with torch.no_grad():
        stops = (stop_logit > 0) | (steps == r - 1)  # decoding stops after the last record anyway
        sub_ok = torch.zeros(b, r, dtype=torch.bool)
        sub_ok[:, :-1] = (sub_logp[:, :-1].argmax(-1) == target).all(-1)
        kind_ok = torch.zeros(b, r, dtype=torch.bool)
        kind_ok[:, :-1] = sub_logp[:, :-1, 0].argmax(-1) == target[..., 0]
        final_ok = torch.zeros(b, r, dtype=torch.bool)
        final_ok[rows, num_sub] = final_logp.argmax(-1) == final
        ok = torch.where(asks, ~stops & sub_ok, stops & final_ok) & live
        errors = {
            "stopped_early": asks & stops,
            "wrong_kind": asks & ~stops & ~kind_ok,
            "wrong_arguments": asks & ~stops & kind_ok & ~sub_ok,
            "did_not_stop": ends & ~stops,
            "wrong_final_answer": ends & stops & ~final_ok,
        }
    return loss, {"ok": ok, "live": live, "asks": asks, "ends": ends, **errors}


class DemoBudget:
    """H behind a counter: every question H decomposes is one demonstration, and H refuses to
    decompose any past the budget."""

    def __init__(self, total: int) -> None:
        self.total, self.used = total, 0

    @property
    def left(self) -> int:
        return self.total - self.used

    def expert(self, task: Task):  # noqa: ANN201 (a generator function)
        def program(questions: np.ndarray) -> ExpertProgram:
            if len(questions) > self.left:
                raise RuntimeError(f"H was asked for {len(questions)} demonstrations, {self.left} are left")
            self.used += len(questions)
            return task.expert(questions)

        return program


class LearnedExpert:
    """H' with its optimiser, the demonstrations H has given, the budget and the schedule."""

    def __init__(self, cfg: LearnedHConfig, task: Task, levels: int) -> None:
        self.cfg, self.task = cfg, task
        self.model = ExpertModel(cfg.expert_model_config(), task, successor=cfg.expert_successor)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.expert_lr, betas=(0.9, 0.98))
        self.budget = DemoBudget(cfg.demos)
        r, w = task.max_subquestions + 1, task.question_len + task.answer_len
        self.records = np.zeros((cfg.demos, r, w), np.int64)
        self.num_sub = np.zeros(cfg.demos, np.int64)
        self.final = np.zeros(cfg.demos, np.int64)
        self.share = math.ceil(cfg.demos / max(levels, 1))  # "curriculum": demos per level
        self.advances, self.level_key = 0, None
        self.updates = 0  # H' optimiser steps so far
        self.eval_set = self._held_out_transcripts(cfg)
        self.last: dict[str, Any] = {}
        self.last_targets: float | None = None  # `targets_agreement` at the last evaluation

    def _held_out_transcripts(self, cfg: LearnedHConfig) -> tuple[torch.Tensor, ...]:
        """A fixed set of H's transcripts (subquestions answered by the ground truth) from a task
        instance of its own, for scoring H' only, like the test set for X: never trained on."""
        task = self.eval_task = cfg.make_task()
        rng = np.random.default_rng([EVAL_SEED, zlib.crc32(task.name.encode()), task.size, 1])
        per = 16
        ctx = task.generate(rng, math.ceil(cfg.expert_eval_questions / per))
        idx = np.repeat(np.arange(len(ctx)), per)[: cfg.expert_eval_questions]
        q = task.sample_questions(ctx, rng, task.episode_kinds, ctx_idx=idx)
        t = task.run_expert(ctx, idx, q, rng)
        kinds = task.kind_of(q)
        self.eval_questions = (ctx, q)  # for `targets_agreement`
        return (
            torch.from_numpy(to_records(task, t)),
            torch.from_numpy(t.num_sub),
            torch.from_numpy(t.answers[:, 0]),
            torch.from_numpy(kinds),
        )

    # -- demonstrations -------------------------------------------------------------------------
    def due(self, t: Trainer) -> int:
        """How many demonstrations H gives now, by the schedule."""
        key = (t.curriculum.level, t.curriculum.size)
        if self.level_key is not None and key != self.level_key:
            self.advances += 1
        self.level_key = key
        schedule = self.cfg.demo_schedule
        if schedule == "steady":
            return min(self.cfg.demos_per_step, self.budget.left)
        if schedule == "upfront":
            return self.budget.left
        # "curriculum" and "paced": a share per curriculum level reached, all once it is complete
        released = self.budget.total
        if t.curriculum.growing:
            released = min(released, self.share * (self.advances + 1))
        due = released - self.budget.used
        return max(0, min(self.cfg.demos_per_step, due) if schedule == "paced" else due)

    def demonstrate(self, t: Trainer, n: int) -> None:
        """H decomposes n fresh training questions, X' answering its subquestions."""
        cfg = self.cfg
        everything = cfg.demo_questions == "all"
        task = t.task if everything else t.train_task()
        target = t.extra["target"].model
        per, chunk = cfg.questions_per_context, 64
        groups = [(per, n // per)] + [(1, n % per)]
        for q_per, contexts in groups:
            for start in range(0, contexts, chunk):
                ctx = task.generate(t.rng, min(chunk, contexts - start))
                _, q, _, _ = draw_questions(
                    task,
                    ctx,
                    t.rng,
                    q_per,
                    None if everything else t.curriculum.max_difficulty,
                    oversample=cfg.curriculum_oversample,
                    with_difficulty=task.difficulty_from_question,
                    kinds=task.episode_kinds if cfg.question_kinds == "all" else None,
                )
                at = self.budget.used
                view = FactsAndLookups(task, ctx)
                transcripts = amplify_transcripts(task, target, view, q, t.rng, self.budget.expert(task))
                self.records[at : self.budget.used] = to_records(task, transcripts)
                self.num_sub[at : self.budget.used] = transcripts.num_sub
                self.final[at : self.budget.used] = transcripts.answers[:, 0]
                t.count("demonstrations", len(q))
                t.count("demonstration_subquestions", int(transcripts.num_sub.sum()))

    # -- learning -------------------------------------------------------------------------------
    def learn(self, rng: np.random.Generator) -> dict[str, float]:
        """One optimiser step of H' on demonstrations drawn from all H has given so far."""
        j = rng.integers(0, self.budget.used, self.cfg.expert_batch)
        loss, out = score(
            self.model,
            torch.from_numpy(self.records[j]),
            torch.from_numpy(self.num_sub[j]),
            torch.from_numpy(self.final[j]),
        )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.updates += 1
        steps_ok = out["ok"][out["live"]].float().mean().item()
        return {"expert_loss": loss.item(), "expert_train_step_agreement": steps_ok}

    # -- H' as an expert program ------------------------------------------------------------------
    def program(self, questions: np.ndarray) -> ExpertProgram:
        """H' decomposing a batch of questions, greedily: the same protocol as `Task.expert`."""
        m, lq = len(questions), self.task.question_len
        records = np.zeros((m, self.model.max_records, self.model.width), np.int64)
        records[:, 0, :lq] = questions
        final = np.full(m, UNKNOWN, np.int64)
        alive = np.ones(m, dtype=bool)
        was_training = self.model.training
        self.model.eval()
        for r in range(self.model.max_records):
            with torch.no_grad():
                stop_logit, sub_logp, final_logp = self.model(torch.from_numpy(records[:, : r + 1]), True)
            stop = (stop_logit[:, 0] > 0).numpy() | (r == self.model.max_records - 1)
            ending = alive & stop
            final[ending] = final_logp[:, 0].argmax(-1).numpy()[ending]
            alive &= ~stop
            if not alive.any():
                break
            sub = sub_logp[:, 0].argmax(-1).numpy()
            answers = yield alive, sub
            records[alive, r + 1, :lq] = sub[alive]
            records[alive, r + 1, lq:] = answers[alive]
        self.model.train(was_training)
        return final[:, None]

    # -- reporting --------------------------------------------------------------------------------
    def agreement(self) -> dict[str, Any]:
        """H' against H on the held-out transcripts, given H's answers so far (teacher forcing: H
        and H' are deterministic in the transcript, so a transcript all of whose steps agree is
        one H' writes itself): the exact next subquestion, the final answer, whole transcripts,
        the kinds of mistakes, and where (after how many subquestions) they happen."""
        records, num_sub, final, kinds = self.eval_set
        self.model.eval()
        with torch.no_grad():
            _, out = score(self.model, records, num_sub, final)
        self.model.train()
        live, ok = out["live"], out["ok"]
        whole = (ok | ~live).all(-1)
        n_steps = int(live.sum())
        report = {
            "next_subquestion": float(ok[out["asks"]].float().mean()),
            "final_answer": float(ok[out["ends"]].float().mean()),
            "steps": float(ok[live].float().mean()),
            "transcripts": float(whole.float().mean()),
            "transcripts_by_kind": {
                self.task.kinds[k]: float(whole[kinds == k].float().mean()) for k in kinds.unique().tolist()
            },
            "errors_per_step": {
                key: int(out[key].sum()) / n_steps
                for key in (
                    "stopped_early",
                    "wrong_kind",
                    "wrong_arguments",
                    "did_not_stop",
                    "wrong_final_answer",
                )
            },
            "error_rate_after_subquestions": {
                str(i): float((~ok[:, i])[live[:, i]].float().mean())
                for i in range(ok.shape[1])
                if live[:, i].any()
            },
        }
        self.last = report
        return report

    def targets_agreement(self, target: Answerer) -> float:
        """How often H' gives X the target H would give: Amplify^{H'}(X') = Amplify^H(X') on the
        held-out questions, X' (today's target copy) answering for both. This, not agreement on
        transcripts answered by the ground truth, is what X's training sees: early on X' answers
        little right, and H''s targets can match H's before H' has seen the transcripts of a
        trained X'. H is called on these questions outside the budget (counted)."""
        ctx, questions = self.eval_questions
        view = FactsAndLookups(self.eval_task, ctx)
        finals = []
        for expert in (self.program, None):  # None: the scripted H
            rng = np.random.default_rng(EVAL_SEED)  # the same draws (e.g. `out a`) for both
            transcripts = amplify_transcripts(self.eval_task, target, view, questions, rng, expert)
            finals.append(transcripts.answers[:, 0])
        self.last_targets = float((finals[0] == finals[1]).mean())
        return self.last_targets

    def report(self) -> dict[str, Any]:
        """The result file's "expert" section."""
        return {
            "targets_agree_with_h": self.last_targets,
            "demonstrations_used": self.budget.used,
            "demonstrations_budget": self.budget.total,
            "demo_schedule": self.cfg.demo_schedule,
            "expert_updates": self.updates,
            "held_out_transcripts": len(self.eval_set[0]),
            "agreement_with_h": self.agreement(),
        }

    # -- checkpoints --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "used": self.budget.used,
            "records": self.records[: self.budget.used].copy(),
            "num_sub": self.num_sub[: self.budget.used].copy(),
            "final": self.final[: self.budget.used].copy(),
            "advances": self.advances,
            "level_key": self.level_key,
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        n = self.budget.used = state["used"]
        self.records[:n], self.num_sub[:n], self.final[:n] = (
            state["records"],
            state["num_sub"],
            state["final"],
        )
        self.advances, self.level_key, self.updates = state["advances"], state["level_key"], state["updates"]


# -- the method -------------------------------------------------------------------------------------
def setup(t: Trainer) -> None:
    cfg = t.cfg
    assert isinstance(cfg, LearnedHConfig)
    iterated_amplification.setup(t)  # X' and the replay buffer, as in IA with H
    c = t.curriculum
    levels = 1
    if c.uses_difficulty:
        levels += t.task.num_difficulties - c.level - 1
    if c.grows_size:
        levels += c.final_size - c.size
    learned = LearnedExpert(cfg, t.task, levels)
    # H's transcripts of the held-out set that H' is scored on (with true subanswers): H is
    # called for them too, outside the demonstration budget, so the result file says how often
    t.run.counts["held_out_expert_transcripts"] = len(learned.eval_set[1])
    t.extra["expert"] = learned
    t.reports["expert"] = learned.report


def train_step(t: Trainer) -> dict[str, float]:
    cfg = t.cfg
    assert isinstance(cfg, LearnedHConfig)
    learned: LearnedExpert = t.extra["expert"]
    # 1. H's demonstrations, as the schedule releases them (counted, never past the budget)
    n = learned.due(t)
    if n:
        learned.demonstrate(t, n)
    # 2. H' imitates them (first, until warmed up, without X)
    for _ in range(max(cfg.expert_steps, cfg.expert_warmup - learned.updates)):
        expert_metrics = learned.learn(t.rng)
    # 3. IA with H' in H's place: targets are Amplify^{H'}(X')
    metrics = iterated_amplification.train_step(t, expert=learned.program)
    metrics.update(expert_metrics, demonstrations=float(learned.budget.used))
    if (t.step + 1) % cfg.eval_every == 0:
        a = learned.agreement()
        metrics.update(expert_next_subquestion=a["next_subquestion"], expert_transcripts=a["transcripts"])
        metrics["expert_targets"] = learned.targets_agreement(t.extra["target"].model)
        t.count("held_out_expert_target_questions", len(learned.eval_questions[1]))
    t.bar["demos"] = str(learned.budget.used)
    if learned.last:
        t.bar["h'"] = f"{learned.last['next_subquestion']:.2f}/{learned.last['transcripts']:.2f}"
    if learned.last_targets is not None:
        t.bar["h' targets"] = f"{learned.last_targets:.2f}"
    return metrics
