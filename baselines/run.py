"""Run bookkeeping shared by every method: the run folder and its lock, logs (CSV, JSONL,
TensorBoard), checkpoints and resuming, the progress bar, and the result file."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock, Timeout
from tqdm import tqdm

from baselines.common import RESUMABLE_CHANGES, TrainConfig, differing_settings
from baselines.errors import RunError, UsageError
from baselines.io import load_checkpoint, save_checkpoint, save_weights
from baselines.results import (
    PARTIAL_STOP_REASONS,
    SCHEMA_VERSION,
    ResultError,
    load_result,
    validate_result,
    weights_path_for,
    write_result_file,
)


def git_commit() -> str:
    """HEAD of the repository this code runs from, with "-dirty" if it has uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def command_line() -> str:
    """The command that started this process, as one would type it again: `amp ...`, or
    `python -m baselines.<module> ...` / `python <script> ...` (no absolute path of this machine)."""
    script, args = Path(sys.argv[0]), sys.argv[1:]
    if script.name == "amp":
        head = "amp"
    else:
        root = Path(__file__).resolve().parent.parent
        try:
            relative = script.resolve().relative_to(root)
        except (OSError, ValueError):
            relative = Path(script.name)
        package = relative.parts[0] if len(relative.parts) > 1 else ""
        if package in ("baselines", "amp_envs") and relative.suffix == ".py":
            head = "python -m " + ".".join(relative.with_suffix("").parts)
        else:
            head = f"python {relative.as_posix()}"
    return " ".join([head, *args])


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str = "cpu") -> dict[str, Any]:
    """Where a run ran: the CPU's platform and library versions, and the GPU if it trained on one.
    The CPU model and the vector instructions torch's kernels use are recorded because a seeded
    run is bit-for-bit repeatable on the same kind of CPU only: other kernels round differently,
    and over hundreds of steps the runs part (seen: shortest path size 16, IA, the same command at
    the same clean commit: 99.2% at step 500 on 2026-12-03's machine, 85.5% on 2026-12-05's)."""
    gpu = {"gpu": torch.cuda.get_device_name(torch.device(device))} if device.startswith("cuda") else {}
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": device,
        **gpu,
    }


class Run:
    """One training run. `runs/<name>/` holds checkpoint.pt, log.csv, log.jsonl, tb/, `lock` and
    `lock.pid` (the one process that may write there); the result file goes to
    `<results_dir>/<name>.json` (default `runs/results/`), the weights beside it in
    `<results_dir>/../weights/<name>.safetensors`. Nothing under `leaderboard/` is written unless
    `results_dir` names it, and a complete result is never replaced unless `overwrite`."""

    def __init__(
        self,
        method: str,
        cfg: TrainConfig,
        runs_dir: str | Path = "runs",
        results_dir: str | Path | None = None,
        resume: bool = False,
        overwrite: bool = False,
    ):
        if resume and overwrite:
            raise UsageError("--resume continues a run and --overwrite starts it over: pass one of them")
        self.method, self.cfg = method, cfg
        self.name = run_name(method, cfg)
        self.dir = Path(runs_dir) / self.name
        self.checkpoint_path = self.dir / "checkpoint.pt"
        self.results_dir = Path(runs_dir) / "results" if results_dir is None else Path(results_dir)
        self.result_path = self.results_dir / f"{self.name}.json"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock: FileLock | None = self._acquire_lock()
        try:
            self._check_existing(resume, overwrite)
        except BaseException:
            self.release()
            raise
        if not resume:  # files of an earlier start (or, with --overwrite, of a finished run)
            for child in self.dir.iterdir():
                if child.name not in ("lock", "lock.pid"):
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        self.commit = git_commit()  # the code this run started from
        self.curve: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}
        self.resumed_at: list[int] = []  # the steps at which the run was resumed
        self.wall_offset = 0.0  # seconds spent before a resume
        self.start = time.perf_counter()
        self._tb = None
        self._bar: tqdm | None = None

    def _acquire_lock(self) -> FileLock:
        """One process per run: a second one is refused, naming the holder (its pid is written
        to `lock.pid` once it holds `lock`; the lock itself is released by the OS if it dies)."""
        path, pid_file = self.dir / "lock", self.dir / "lock.pid"
        lock = FileLock(str(path))
        try:
            lock.acquire(blocking=False)
        except Timeout:
            holder = pid_file.read_text().strip() if pid_file.exists() else ""
            raise RunError(
                f"run {self.name} is in use by process {holder or '(unknown)'}: wait for it to end or stop "
                f"it (lock file {path})"
            ) from None
        pid_file.write_text(f"{os.getpid()}\n")
        return lock

    def release(self) -> None:
        """Let another process take the run (at the end of training, or when the process exits)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _check_existing(self, resume: bool, overwrite: bool) -> None:
        existing = None
        if self.result_path.exists():
            try:
                existing = load_result(self.result_path)
            except ResultError:
                existing = {"partial": False, "stop_reason": "unreadable"}
        finished = existing is not None and not existing["partial"]
        if resume:
            if not self.checkpoint_path.exists():
                raise UsageError(
                    f"no checkpoint of run {self.name} to resume in {self.dir} (every setting but "
                    f"{', '.join(RESUMABLE_CHANGES)} names a run: resume with the arguments it started with)"
                )
            if finished and existing["stop_reason"] == "steps":
                raise UsageError(
                    f"run {self.name} is complete ({self.result_path}): nothing to resume "
                    "(--overwrite trains it again from scratch)"
                )
            return
        if overwrite:
            return
        if self.checkpoint_path.exists():
            raise UsageError(
                f"{self.dir} already holds a run: --resume to continue it, or --overwrite to start over"
            )
        if finished:
            what = "an unreadable" if existing["stop_reason"] == "unreadable" else "a complete"
            raise UsageError(
                f"{what} result of run {self.name} exists ({self.result_path}): "
                "--overwrite to replace it and its weights, or another --results-dir"
            )

    # -- time and logs --------------------------------------------------------------------------
    def wall(self) -> float:
        return self.wall_offset + time.perf_counter() - self.start

    def out_of_time(self) -> bool:
        return self.cfg.max_minutes > 0 and self.wall() > 60 * self.cfg.max_minutes

    def log(self, row: dict[str, Any]) -> None:
        """Append one evaluation row to the curve, log.csv, log.jsonl and TensorBoard."""
        self.curve.append(row)
        flat = {k: v for k, v in row.items() if not isinstance(v, dict)}
        csv_path = self.dir / "log.csv"
        if csv_path.exists():  # keep the columns of the header already written
            with csv_path.open(newline="") as f:
                fields = next(csv.reader(f), list(flat))
        else:
            fields = list(flat)
        with csv_path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if f.tell() == 0:
                writer.writeheader()
            writer.writerow(flat)
        with (self.dir / "log.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.dir / "tb"))
        for key, value in flat.items():
            if isinstance(value, (int, float)) and key != "step":
                self._tb.add_scalar(key, value, row["step"])
        self._tb.flush()

    def progress(self, step: int, total: int, **fields: Any) -> None:
        if self._bar is None:
            self._bar = tqdm(total=total, initial=step, desc=self.name, dynamic_ncols=True, leave=True)
        self._bar.n = step
        self._bar.set_postfix(fields, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()

    # -- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self, state: dict[str, Any]) -> None:
        state = {
            **state,
            "method": self.method,
            "config": asdict(self.cfg),
            "curve": self.curve,
            "counts": self.counts,
            "resumed_at": self.resumed_at,
            "wall": self.wall(),
            "torch_rng": torch.get_rng_state(),
        }
        save_checkpoint(state, self.checkpoint_path)

    def load_checkpoint(self) -> dict[str, Any]:
        state = load_checkpoint(self.checkpoint_path)
        changed = differing_settings(state["config"], asdict(self.cfg))
        if state["method"] != self.method or changed:
            raise UsageError(
                f"checkpoint {self.checkpoint_path} was written by a different method or config "
                f"(differs in: {changed or 'method'}); resume with the same arguments "
                f"(only {', '.join(RESUMABLE_CHANGES)} may change), or --overwrite to start over"
            )
        self.counts, self.resumed_at = state["counts"], [*state["resumed_at"], state["step"]]
        self.wall_offset = state["wall"]
        self.start = time.perf_counter()
        torch.set_rng_state(state["torch_rng"])
        # the logs may hold rows written after the checkpoint: rewrite them from the curve. A row
        # off the evaluation schedule was the stop's own evaluation: an uninterrupted run has none
        for name in ("log.csv", "log.jsonl"):
            (self.dir / name).unlink(missing_ok=True)
        shutil.rmtree(self.dir / "tb", ignore_errors=True)
        for row in state["curve"]:
            if row["step"] > 0 and row["step"] % self.cfg.eval_every == 0:
                self.log(row)
        return state

    # -- the result file --------------------------------------------------------------------------
    def write_result(
        self,
        final: dict[str, Any],
        step: int,
        stop_reason: str,
        model: torch.nn.Module | None = None,
        error: str | None = None,
    ) -> Path | None:
        """stop_reason: "steps" (the step budget was reached), "time" (`max_minutes` was),
        "interrupted" (Ctrl-C or SIGTERM) or "error" (a step raised, or the loss or weights became
        non-finite; `error` says what): these two mark it partial. With `model`, its weights alone
        go to the weights file (what `amp verify` re-evaluates). A run that never evaluated has no
        result (returns None)."""
        if not self.curve:
            return None
        result = {
            "schema_version": SCHEMA_VERSION,
            "task": self.cfg.task,
            "size": self.cfg.size,
            "method": self.method,
            "seed": self.cfg.seed,
            "config": asdict(self.cfg),
            "commit": self.commit,
            "machine": machine(self.cfg.device),
            "command": command_line(),
            "partial": stop_reason in PARTIAL_STOP_REASONS,
            "stop_reason": stop_reason,
            "error": error,
            "steps": step,
            "wall_seconds": round(self.wall(), 2),
            "resumed_at": self.resumed_at,
            "final": final,
            "counts": self.counts,
            "steps_to": {str(t): steps_to(self.curve, t / 100) for t in (90, 99)},
            "curve": self.curve,
            "checkpoint": f"{self.name}/checkpoint.pt",
            "weights": None,
        }
        # what is written is what every reader accepts (checked as they will read it: from JSON),
        # checked before the weights are written, so that no weights file is left without its result
        validate_result(json.loads(json.dumps(result)), self.result_path)
        if model is not None:
            weights_path = weights_path_for(self.result_path)
            result["weights"] = {
                "path": weights_path.relative_to(self.results_dir.parent).as_posix(),
                "sha256": save_weights(model, weights_path),
            }
        write_result_file(result, self.result_path)
        return self.result_path


def config_id(cfg: TrainConfig) -> str:
    """8 hex digits naming the configuration: every setting that shapes the run's result (the
    step budget and the evaluation schedule included), so two runs that could differ never share
    a folder or a result file."""
    settings = {k: v for k, v in asdict(cfg).items() if k not in RESUMABLE_CHANGES}
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


def run_name(method: str, cfg: TrainConfig) -> str:
    """`<task>-n<size>-<method>-s<seed>-<config id>`: a run's folder and its result file's name."""
    return f"{cfg.task}-n{cfg.size}-{method}-s{cfg.seed}-{config_id(cfg)}"


def steps_to(curve: list[dict[str, Any]], accuracy: float) -> dict[str, Any] | None:
    """The first evaluation at which the test accuracy reached `accuracy` (steps, wall seconds)."""
    for row in curve:
        if row["accuracy"] >= accuracy:
            return {"step": row["step"], "wall_seconds": row["wall_seconds"], "questions": row["questions"]}
    return None
