"""The training loop every method shares: seeding, the optimiser and its schedule, evaluation on
the fixed test set, checkpoints and resuming, the progress bar and the result file. A method is a
`train_step(trainer) -> metrics` function plus any extra state it keeps (`trainer.extra`).

A run whose loss, gradients or weights become non-finite stops at that step with a partial
result that says so (`stop_reason` "error", `error`) and raises `RunError`: a NaN run never
passes for a finished one."""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch

from amp_envs.tasks import Task, make_task
from baselines.common import Curriculum, EvalSet, TrainConfig, build_model
from baselines.errors import RunError
from baselines.run import Run


class Trainer:
    def __init__(
        self,
        method: str,
        cfg: TrainConfig,
        runs_dir: str | Path = "runs",
        results_dir: str | Path | None = None,
        resume: bool = False,
        quiet: bool = False,
        overwrite: bool = False,
    ) -> None:
        cfg.validate()
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.cfg, self.method, self.resume, self.quiet = cfg, method, resume, quiet
        self.task = cfg.make_task()
        self._tasks_by_size = {cfg.size: self.task}
        self.rng = np.random.default_rng(cfg.seed)
        self.model = build_model(cfg, self.task)
        self.opt = torch.optim.Adam(
            self.model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay
        )
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.opt, cfg.lr_factor)
        self.curriculum = Curriculum(cfg, self.task)
        # scored with its own task instance: nothing done to the training task can touch it
        self.eval_set = EvalSet.build(cfg.make_task(), cfg.eval_contexts, cfg.eval_questions_per_context)
        self.run = Run(method, cfg, runs_dir, results_dir, resume=resume, overwrite=overwrite)
        self.step = 0
        self.questions_seen = 0
        self.extra: dict[str, Any] = {}  # method state with state_dict/load_state_dict
        self.reports: dict[str, Callable[[], Any]] = {}  # method sections of the result's "final"
        self.bar: dict[str, str] = {}  # method fields shown in the progress bar
        self.stop_requested = False
        self.last_eval: dict[str, Any] = {"accuracy": 0.0}
        self.result_path: Path | None = None  # None until written (and if the run never evaluated)

    def train_task(self) -> Task:
        """The task at the curriculum's current context size (one vocabulary for all sizes)."""
        size = self.curriculum.size
        if size not in self._tasks_by_size:
            self._tasks_by_size[size] = make_task(self.cfg.task, size, max_size=self.cfg.size)
        return self._tasks_by_size[size]

    def request_stop(self) -> None:
        """Stop after the current step, with a checkpoint and a partial result (what Ctrl-C and
        SIGTERM do under `amp train`)."""
        self.stop_requested = True

    def count(self, key: str, n: int) -> None:
        self.run.counts[key] = self.run.counts.get(key, 0) + int(n)

    def optimise(self, loss: torch.Tensor) -> None:
        """One optimiser step on `loss`; `RunError` if the loss, the gradients or the updated
        weights are not finite (the weights are then garbage: the run must stop)."""
        where = f"at step {self.step + 1}"
        if not torch.isfinite(loss).all():
            raise RunError(f"the loss became non-finite ({float(loss.detach().sum())}) {where}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        if not math.isfinite(float(norm)):
            raise RunError(f"the gradient norm became non-finite ({float(norm)}) {where}")
        self.opt.step()
        self.schedule.step()
        self.check_weights_finite(where)

    def check_weights_finite(self, where: str) -> None:
        total = float(torch.nn.utils.get_total_norm([p.detach() for p in self.model.parameters()]))
        if not math.isfinite(total):
            raise RunError(f"the weights became non-finite {where}")

    # -- the loop -------------------------------------------------------------------------------
    def fit(self, train_step: Callable[[Trainer], dict[str, float]]) -> dict[str, Any]:
        """Train to `cfg.steps` (or `cfg.max_minutes`), then write the result file."""
        cfg = self.cfg
        if self.resume:
            self._restore()
        metrics: dict[str, float] = {}
        self.stop_reason = "steps"
        consistent = True  # False if a step was cut in the middle: keep the last checkpoint
        try:
            while self.step < cfg.steps:
                if self.stop_requested:
                    self.stop_reason = "interrupted"
                    break
                if self.run.out_of_time():
                    self.stop_reason = "time"
                    break
                metrics = train_step(self)
                self.step += 1
                # a method whose step is not one batch of questions (RL: episodes) says how many
                self.questions_seen += int(
                    metrics.pop("questions", cfg.batch_contexts * cfg.questions_per_context)
                )
                if self.step % cfg.eval_every == 0:
                    self.evaluate(metrics)
                if self.step % cfg.checkpoint_every == 0:
                    self.checkpoint()
                if not self.quiet:
                    self.run.progress(
                        self.step,
                        cfg.steps,
                        acc=f"{self.last_eval['accuracy']:.3f}",
                        level=self.curriculum.describe(),
                        loss=f"{metrics.get('loss', 0.0):.3f}",
                        **self.bar,
                    )
        except KeyboardInterrupt:
            # raised inside a step: its state may be half updated, so the last checkpoint stays
            self.stop_reason, consistent = "interrupted", False
            print(f"\ninterrupted during step {self.step}: keeping the last checkpoint")
        except Exception as error:
            self._fail(error)
        if self.stop_reason == "interrupted" and consistent:
            print(f"\nstopped after step {self.step}: writing a checkpoint and a partial result")
        try:
            if not self.run.curve or self.run.curve[-1]["step"] != self.step:
                self.evaluate(metrics)
            if consistent:
                self.checkpoint()
        except RunError as error:
            self._fail(error)
        self.run.close()
        final = self._final()
        self.result_path = self.run.write_result(final, self.step, self.stop_reason, model=self.model)
        self.run.release()
        return final

    def _fail(self, error: Exception) -> NoReturn:
        """A step (or the last evaluation) raised: say how far the run got in a partial result (its
        accuracy is the last evaluation's, no weights: the model may be half updated), then
        re-raise."""
        self.stop_reason = "error"
        what = (
            str(error)
            if isinstance(error, RunError)
            else f"step {self.step + 1} raised {type(error).__name__}"
        )
        self.run.close()
        self.result_path = self.run.write_result(self._final(), self.step, "error", error=what)
        written = (
            f"partial result {self.result_path}" if self.result_path else "no result (nothing evaluated)"
        )
        self.run.release()
        if isinstance(error, RunError):  # the caller reports it (`amp`: one line)
            raise RunError(f"{what}: {written}") from None
        print(f"\n{what}: {written}")
        raise error

    def _final(self) -> dict[str, Any]:
        final = {**self.last_eval, "curriculum": self.curriculum.state_dict()}
        final.update({key: report() for key, report in self.reports.items()})
        return final

    def evaluate(self, metrics: dict[str, float]) -> None:
        self.check_weights_finite(f"by step {self.step}")
        bad = [k for k, v in metrics.items() if not math.isfinite(float(v))]
        if bad:  # e.g. the learned expert's loss, or an RL agent's
            raise RunError(f"the metric {bad[0]} became non-finite ({metrics[bad[0]]}) by step {self.step}")
        result = self.eval_set.evaluate(self.model)
        self.last_eval = result
        self.run.log(
            {
                "step": self.step,
                "questions": self.questions_seen,
                "wall_seconds": round(self.run.wall(), 2),
                "accuracy": result["accuracy"],
                "unknown_rate": result["unknown_rate"],
                "curriculum_level": self.curriculum.level,
                "curriculum_size": self.curriculum.size,
                "lr": self.schedule.get_last_lr()[0],
                **{k: float(v) for k, v in metrics.items()},
                "counts": dict(self.run.counts),  # information consumed so far (labels, ...)
                "per_difficulty": {str(k): v["accuracy"] for k, v in result["per_difficulty"].items()},
            }
        )

    # -- checkpoints ------------------------------------------------------------------------------
    def checkpoint(self) -> None:
        self.run.save_checkpoint(
            {
                "step": self.step,
                "questions_seen": self.questions_seen,
                "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(),
                "schedule": self.schedule.state_dict(),
                "numpy_rng": self.rng.bit_generator.state,
                "curriculum": self.curriculum.state_dict(),
                "last_eval": self.last_eval,
                "extra": {k: v.state_dict() for k, v in self.extra.items()},
                "commit": self.run.commit,
            }
        )

    def _restore(self) -> None:
        state = self.run.load_checkpoint()  # the Run made sure there is one
        self.step, self.questions_seen = state["step"], state["questions_seen"]
        self.last_eval, self.run.commit = state["last_eval"], state["commit"]
        self.restore_state(state)
        print(f"resumed {self.run.name} at step {self.step}")

    def restore_state(self, state: dict[str, Any]) -> None:
        """The learner's part of a checkpoint (a trainer with other state overrides this)."""
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.rng.bit_generator.state = state["numpy_rng"]
        self.curriculum.load_state_dict(state["curriculum"])
        for key, value in state["extra"].items():
            self.extra[key].load_state_dict(value)


@contextmanager
def stop_cleanly_on_signals(trainer: Trainer) -> Iterator[None]:
    """While training: Ctrl-C or SIGTERM finish the current step, checkpoint and write a partial
    result; a second signal interrupts at once (the last checkpoint is kept). The handlers from
    before are put back when training ends, so a later Ctrl-C (in a notebook, in pytest) is not
    sent to a finished trainer."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: object) -> None:
        trainer.request_stop()
        for s in previous:
            signal.signal(s, signal.default_int_handler)

    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
