"""Run bookkeeping shared by every method: the run folder, logs (CSV, JSONL, TensorBoard), atomic
checkpoints and resuming, the progress bar, and the result file under `leaderboard/results/`."""

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
from tqdm import tqdm

from baselines.common import TrainConfig
from baselines.model import naming_settings
from baselines.results import PARTIAL_STOP_REASONS, SCHEMA_VERSION, save_weights, weights_path_for

RESULTS_DIR = Path(__file__).resolve().parent.parent / "leaderboard" / "results"


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


def atomic_save(obj: Any, path: Path) -> None:
    """Write `path` so that a crash leaves either the old file or the new one, never half."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_write_bytes(data: bytes, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def atomic_write_text(text: str, path: Path) -> None:
    atomic_write_bytes(text.encode(), path)


class Run:
    """One training run: `runs/<name>/` holds checkpoint.pt, log.csv, log.jsonl, tb/."""

    def __init__(
        self,
        method: str,
        cfg: TrainConfig,
        runs_dir: str | Path = "runs",
        results_dir: Path | None = None,
        resume: bool = False,
    ):
        self.method, self.cfg = method, cfg
        self.name = f"{cfg.task}-n{cfg.size}-{method}-s{cfg.seed}-{config_id(cfg)}"
        self.dir = Path(runs_dir) / self.name
        self.checkpoint_path = self.dir / "checkpoint.pt"
        if not resume:
            if self.checkpoint_path.exists():
                raise ValueError(
                    f"{self.dir} already holds a run: pass --resume to continue it, "
                    "or delete the folder to start over"
                )
            shutil.rmtree(self.dir, ignore_errors=True)  # logs of a start that never checkpointed
        self.dir.mkdir(parents=True, exist_ok=True)
        self.results_dir = RESULTS_DIR if results_dir is None else Path(results_dir)
        self.commit = git_commit()  # the code this run started from
        self.curve: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}
        self.wall_offset = 0.0  # seconds spent before a resume
        self.start = time.perf_counter()
        self._tb = None
        self._bar: tqdm | None = None

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
            "wall": self.wall(),
            "torch_rng": torch.get_rng_state(),
        }
        atomic_save(state, self.checkpoint_path)

    def load_checkpoint(self) -> dict[str, Any] | None:
        if not self.checkpoint_path.exists():
            return None
        state = torch.load(self.checkpoint_path, weights_only=False, map_location="cpu")
        theirs = comparable_settings(state["config"], self.cfg)
        ours = comparable_settings(asdict(self.cfg), self.cfg)
        if state["method"] != self.method or theirs != ours:
            changed = sorted(k for k in ours if theirs.get(k) != ours[k])
            raise ValueError(
                f"checkpoint {self.checkpoint_path} was written by a different method or config "
                f"(differs in: {changed or 'method'}); resume with the same arguments "
                "(only the budget, threads and device may change), or delete the run folder to start over"
            )
        self.curve, self.counts = state["curve"], state["counts"]
        self.wall_offset = state["wall"]
        self.start = time.perf_counter()
        torch.set_rng_state(state["torch_rng"])
        # the logs may hold rows written after the checkpoint: rewrite them from the curve
        for name in ("log.csv", "log.jsonl"):
            (self.dir / name).unlink(missing_ok=True)
        shutil.rmtree(self.dir / "tb", ignore_errors=True)
        curve, self.curve = self.curve, []
        for row in curve:
            self.log(row)
        return state

    # -- the result file --------------------------------------------------------------------------
    def write_result(
        self, final: dict[str, Any], step: int, stop_reason: str, model: torch.nn.Module | None = None
    ) -> Path:
        """stop_reason: "steps" (the step budget was reached), "time" (`max_minutes` was),
        "interrupted" (Ctrl-C or SIGTERM) or "error" (a step raised): these two mark it partial.
        With `model`, its weights alone go to `leaderboard/weights/<name>.pt` (what `amp verify`
        re-evaluates)."""
        path = self.results_dir / f"{self.name}.json"
        weights = None
        if model is not None:
            weights_path = weights_path_for(path)
            weights = {
                "path": str(weights_path.relative_to(path.parent.parent)),
                "sha256": save_weights(model, weights_path),
            }
        result = {
            "schema_version": SCHEMA_VERSION,
            "task": self.cfg.task,
            "size": self.cfg.size,
            "method": self.method,
            "seed": self.cfg.seed,
            "config": asdict(self.cfg),
            "commit": self.commit,
            "machine": machine(self.cfg.device),
            "command": " ".join(["amp", *sys.argv[1:]])
            if Path(sys.argv[0]).name == "amp"
            else " ".join(sys.argv),
            "partial": stop_reason in PARTIAL_STOP_REASONS,
            "stop_reason": stop_reason,
            "steps": step,
            "wall_seconds": round(self.wall(), 2),
            "final": final,
            "counts": self.counts,
            "steps_to": {str(t): steps_to(self.curve, t / 100) for t in (90, 99)},
            "curve": self.curve,
            "checkpoint": str(self.checkpoint_path),
            "weights": weights,
        }
        atomic_write_text(json.dumps(result, indent=1) + "\n", path)
        return path


# settings that change how a run is watched or budgeted, not what it learns
NOT_IN_CONFIG_ID = ("steps", "max_minutes", "eval_every", "checkpoint_every", "threads", "device")
# what a resumed run may change: its budget, and where it runs
RESUMABLE_CHANGES = ("steps", "max_minutes", "threads", "device")


def comparable_settings(
    config: dict[str, Any], cfg: TrainConfig, leave_out: tuple[str, ...] = RESUMABLE_CHANGES
) -> dict[str, Any]:
    """A config's settings without `leave_out`, where settings added later count as their value
    from before (`naming_settings`, for the method's and the model's): what names a run
    (`config_id`), and what a checkpoint must share with a run that resumes it (all but
    `RESUMABLE_CHANGES`: a resume may extend the budget, or move to other threads or a GPU; so
    a checkpoint from before `route_init_std` existed resumes a run with it at 0.02, not 0.1)."""
    settings = naming_settings({k: v for k, v in config.items() if k not in leave_out}, type(cfg))
    settings["model_overrides"] = naming_settings(settings.get("model_overrides", {}))
    return settings


def config_id(cfg: TrainConfig) -> str:
    """8 hex digits naming the configuration, so runs that differ in any setting that shapes
    training never share a folder or a result file."""
    settings = comparable_settings(asdict(cfg), cfg, NOT_IN_CONFIG_ID)
    if cfg.lr_schedule != "constant":  # the schedule is stretched over the step budget
        settings["steps"] = cfg.steps
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


def steps_to(curve: list[dict[str, Any]], accuracy: float) -> dict[str, Any] | None:
    """The first evaluation at which the test accuracy reached `accuracy` (steps, wall seconds)."""
    for row in curve:
        if row["accuracy"] >= accuracy:
            return {"step": row["step"], "wall_seconds": row["wall_seconds"], "questions": row["questions"]}
    return None
