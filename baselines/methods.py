"""The learning methods by name: what `amp train --method NAME` runs.

A method is a config dataclass (extending `TrainConfig`), a `train_step(trainer) -> metrics`
function, and optionally a `setup(trainer)` that creates its extra state. Register your own with
`register_method` and it is trainable, evaluable and written to the leaderboard like the rest.

The protocol, what a method receives and returns (worked example: examples/custom_method.py):

* receives, through the `Trainer` `t`: the batched engine `t.train_task()` (or build the
  Gymnasium env from `t.cfg.task`), a seeded `t.rng`, the answerer X `t.model` with
  `t.optimise(loss)`, state kept in `t.extra` (checkpointed), and a budget: `train_step` is
  called until `cfg.steps` steps or `cfg.max_minutes` minutes;
* records with `t.count(key, n)` every piece of information it consumes (`ground_truth_labels`,
  `demonstrations`, `expert_subquestions`, `reward_queries`, `environment_steps`, ...; a count
  never recorded is shown as 0);
* returns, per step, metrics to log; in the end `t.model`, the answerer that is evaluated on the
  fixed test set, saved (leaderboard/weights/) and re-evaluated by `amp verify` (a method whose
  trained artefact is not X gives `rebuild` and `evaluate`, as the RL methods do).

Outside the package: `register_method` in your own module, then `amp train --import my_module
--method NAME` (or `amp bench --import ...`), and `amp leaderboard` shows its rows.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from baselines import expert_iteration, iterated_amplification, learned_expert, rl, supervised
from baselines.common import TrainConfig
from baselines.errors import UsageError
from baselines.trainer import Trainer, stop_cleanly_on_signals


@dataclass(frozen=True)
class Method:
    config: type[TrainConfig]
    train_step: Callable[[Trainer], dict[str, float]]
    setup: Callable[[Trainer], None] | None = None
    trainer: type[Trainer] = Trainer  # the RL methods wrap an SB3 agent in a Trainer subclass
    # what `amp verify` loads a run's weights into and scores it with (default: X and the fixed
    # test set; the RL methods: their SB3 policy and the env's seeded episodes)
    rebuild: Callable[[TrainConfig], torch.nn.Module] | None = None
    evaluate: Callable[[TrainConfig, torch.nn.Module], dict[str, Any]] | None = None


METHODS: dict[str, Method] = {
    "supervised": Method(supervised.SupervisedConfig, supervised.train_step),
    "ia": Method(
        iterated_amplification.IAConfig, iterated_amplification.train_step, iterated_amplification.setup
    ),
    "ia-learned-h": Method(learned_expert.LearnedHConfig, learned_expert.train_step, learned_expert.setup),
    "exit": Method(expert_iteration.ExItConfig, expert_iteration.train_step, expert_iteration.setup),
    "ppo": Method(rl.RLConfig, rl.train_step, trainer=rl.RLTrainer, **rl.VERIFY_HOOKS),
    "a2c": Method(rl.A2CConfig, rl.train_step, trainer=rl.RLTrainer, **rl.VERIFY_HOOKS),
}


def import_plugins(plugins: Iterable[str]) -> None:
    """Import modules (`my_package.my_method`) or files (`examples/custom_method.py`) that
    register methods with `register_method`; each at most once per process. A plugin that
    cannot be imported is a `UsageError` naming it."""
    for plugin in plugins:
        try:
            if plugin.endswith(".py"):
                path = Path(plugin).resolve()
                name = "amp_plugin_" + path.stem
                if name in sys.modules:
                    continue
                spec = importlib.util.spec_from_file_location(name, path)
                if spec is None or spec.loader is None or not path.is_file():
                    raise UsageError(f"cannot import {plugin}: no such file")
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[name]
                    raise
            else:
                importlib.import_module(plugin)
        except UsageError:
            raise
        except Exception as error:  # a plugin that does not import (or registers a taken name)
            raise UsageError(f"cannot import {plugin}: {type(error).__name__}: {error}") from None


def register_method(name: str, method: Method) -> None:
    if name in METHODS:
        raise ValueError(f"a method named {name!r} is already registered")
    METHODS[name] = method


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise UsageError(f"unknown method {name!r}; choose from {sorted(METHODS)}")
    return METHODS[name]


def train(
    method: str,
    cfg: TrainConfig,
    on_start: Callable[[Trainer], None] | None = None,
    stop_on_signals: bool = False,
    **trainer_options: object,
) -> Trainer:
    """Train `method` with `cfg`; returns the trainer (model, result path, curve).
    `on_start(trainer)` runs once the trainer exists; with `stop_on_signals`, Ctrl-C and SIGTERM
    stop the run cleanly (what `amp train` and `amp bench` do)."""
    m = get_method(method)
    if not isinstance(cfg, m.config):
        raise ValueError(f"method {method!r} takes a {m.config.__name__}, got {type(cfg).__name__}")
    try:
        trainer = m.trainer(method, cfg, **trainer_options)  # type: ignore[arg-type]
    except ValueError as error:  # the config, checked before anything runs
        raise UsageError(str(error)) from error
    try:
        if m.setup is not None:
            try:
                m.setup(trainer)
            except ValueError as error:  # a method's own check of the config
                raise UsageError(str(error)) from error
        if on_start is not None:
            on_start(trainer)
        with stop_cleanly_on_signals(trainer) if stop_on_signals else contextlib.nullcontext():
            trainer.fit(m.train_step)
    finally:
        trainer.run.release()
    return trainer
