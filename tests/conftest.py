"""Shared test set-up."""

from __future__ import annotations

import pytest

# The smallest run of the learners that exercises every code path: the tests' shared base config
TINY_MODEL = {"d_model": 32, "n_heads": 2, "encoder_layers": 1, "decoder_layers": 1, "d_ff": 64}
TINY_RUN = dict(
    size=6,
    steps=12,
    batch_contexts=4,
    questions_per_context=4,
    eval_every=6,
    checkpoint_every=6,
    eval_contexts=8,
    eval_questions_per_context=4,
    model_overrides=TINY_MODEL,
)


@pytest.fixture(autouse=True)
def runs_go_to_a_temporary_folder(tmp_path, monkeypatch):
    """Every test runs in its own folder: a run's default `runs/` (results included) lands there,
    never in the repository."""
    monkeypatch.chdir(tmp_path)


def forbid_in_training_tasks(monkeypatch, attributes: tuple[str, ...], message: str) -> None:
    """Make `attributes` of every task a Trainer trains on (its own and each curriculum size's)
    raise AssertionError(message); the test set keeps its own, intact task."""
    import baselines.trainer as trainer_module

    original_init = trainer_module.Trainer.__init__
    make = trainer_module.make_task

    def forbid(task):
        def forbidden(*a, **k):
            raise AssertionError(message)

        for attr in attributes:
            monkeypatch.setattr(task, attr, forbidden)
        return task

    def init_forbidding(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        forbid(self.task)
        monkeypatch.setattr(trainer_module, "make_task", lambda *a, **k: forbid(make(*a, **k)))

    monkeypatch.setattr(trainer_module.Trainer, "__init__", init_forbidding)


def stop_after(step: int):
    """An `on_start` hook: the run stops cleanly after the evaluation at `step` (as Ctrl-C
    would: checkpoint, partial result), so that a test can resume it."""

    def on_start(trainer) -> None:
        evaluate = trainer.evaluate

        def evaluate_then_stop(metrics):
            evaluate(metrics)
            if trainer.step >= step:
                trainer.request_stop()

        trainer.evaluate = evaluate_then_stop

    return on_start
