"""The task engine: one module per task, each a `Task` subclass (see `base.py`)."""

from __future__ import annotations

from amp_envs.tasks.base import PAD, UNKNOWN, Contexts, Task, Transcripts, Vocab
from amp_envs.tasks.permutation_power import PermutationPower
from amp_envs.tasks.sequential_assignment import EvalSum, SequentialAssignment
from amp_envs.tasks.shortest_path import ShortestPath
from amp_envs.tasks.union_find import UnionFind
from amp_envs.tasks.wildcard_search import WildcardSearch

TASKS: dict[str, type[Task]] = {
    cls.name: cls
    for cls in (PermutationPower, SequentialAssignment, UnionFind, WildcardSearch, ShortestPath, EvalSum)
}

# the paper's five tasks: what the leaderboard and `amp bench` cover (EvalSum is an auxiliary)
BENCHMARK_TASKS = ("PermutationPower", "SequentialAssignment", "UnionFind", "WildcardSearch", "ShortestPath")


def make_task(name: str | Task, size: int | None = None, **kwargs: object) -> Task:
    """A task instance by its registered name (size defaults to 64, the paper's), or an instance
    passed through unchanged (a size or options that disagree with it are refused)."""
    if isinstance(name, Task):
        if kwargs or (size is not None and size != name.size):
            raise ValueError("pass either a Task instance or a task name with size and options, not both")
        return name
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {sorted(TASKS)}")
    return TASKS[name](size=64 if size is None else size, **kwargs)


__all__ = [
    "PAD",
    "UNKNOWN",
    "BENCHMARK_TASKS",
    "TASKS",
    "Contexts",
    "EvalSum",
    "PermutationPower",
    "SequentialAssignment",
    "ShortestPath",
    "Task",
    "Transcripts",
    "UnionFind",
    "Vocab",
    "WildcardSearch",
    "make_task",
]
