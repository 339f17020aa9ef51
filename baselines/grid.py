"""`amp bench` and `amp reproduce`: train a set of runs (a grid of tasks x methods x sizes x
seeds, or the runs that result files record) into a runs folder.

Resumable: a run whose complete result file exists is skipped, a run that was interrupted
(a partial result or a checkpoint without a result) is resumed from its checkpoint; so the same
command, run again, finishes what is left. Backends:

* `local` (default): `--jobs` worker processes on this machine, one fresh process per run.
* `ray` (`pip install 'amp-envs[ray]'`): every run is a Ray task, on the cluster at
  `--ray-address` or on a local Ray instance; for grids that outgrow one machine (the runs
  folder and the results folder must then be on storage every node sees). A task whose worker
  dies is retried once, and the retry resumes the run from its last checkpoint.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import itertools
import json
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baselines.errors import UsageError
from baselines.methods import get_method, import_plugins, train
from baselines.results import ResultError, load_result, load_results, recorded_config
from baselines.run import config_id, run_name


@dataclass(frozen=True)
class RunSpec:
    """One run of the grid: a method and the config values that differ from its defaults."""

    method: str
    settings: dict[str, Any] = field(hash=False)
    runs_dir: str = "runs"
    results_dir: str = "runs/results"
    plugins: tuple[str, ...] = ()  # modules or .py files that register methods (`--import`)

    def config(self) -> Any:
        return get_method(self.method).config(**self.settings)

    @property
    def name(self) -> str:
        return run_name(self.method, self.config())

    @property
    def result_path(self) -> Path:
        return Path(self.results_dir) / f"{self.name}.json"

    def status(self) -> str:
        """ "done" (complete result file), "resume" (interrupted, or stopped by a smaller time budget
        than asked now: continue it from its checkpoint) or "new" (train from scratch)."""
        if self.result_path.exists():
            try:
                result = load_result(self.result_path)
                if not result["partial"] and not self.asks_more_time_than(result):
                    return "done"
            except ResultError:
                pass  # a broken file: train again (resuming if there is a checkpoint)
        return "resume" if (Path(self.runs_dir) / self.name / "checkpoint.pt").exists() else "new"

    def asks_more_time_than(self, result: dict[str, Any]) -> bool:
        """Whether `result` stopped on its time budget and this spec's is larger (the time budget
        does not name a run, so `--max-minutes 20` extends a 3-minute run)."""
        cfg = self.config()
        more = cfg.max_minutes == 0 or cfg.max_minutes > result["config"]["max_minutes"]
        return result["stop_reason"] == "time" and cfg.steps > result["steps"] and more


def find_results(results_dir: str | Path, specs: Iterable[RunSpec]) -> dict[RunSpec, dict[str, Any] | None]:
    """For each spec, the valid result file in `results_dir` of its run, or None: found by the
    config the file records, not by its name, leaving out the evaluation schedule and, where the
    learning rate is constant, the step budget (the weights are those of the same run as far as
    it got; the bars' files were made that way). Of several, the one that trained longest."""

    def key(method: str, cfg: Any) -> tuple[str, str]:
        cfg = dataclasses.replace(cfg, eval_every=1)
        if cfg.lr_schedule == "constant":
            cfg = dataclasses.replace(cfg, steps=1)
        return method, config_id(cfg)

    found: dict[tuple[str, str], dict[str, Any]] = {}
    for result in load_results(results_dir, skipped=[]):
        k = key(result["method"], recorded_config(result))
        if k not in found or result["steps"] > found[k]["steps"]:
            found[k] = result
    return {spec: found.get(key(spec.method, spec.config())) for spec in specs}


def grid(
    tasks: Iterable[str],
    methods: Iterable[str],
    sizes: Iterable[int],
    seeds: Iterable[int],
    settings: dict[str, Any] | None = None,
    runs_dir: str | Path = "runs",
    results_dir: str | Path | None = None,
    plugins: Iterable[str] = (),
) -> list[RunSpec]:
    """The runs of a grid, seed by seed. `settings` (e.g. max_minutes, steps, eval_every) go to
    every method whose config has that field; one that no method has is an error. Results go to
    `results_dir` (default <runs_dir>/results)."""
    results_dir = Path(runs_dir) / "results" if results_dir is None else results_dir
    methods, settings = list(methods), settings or {}
    known = set().union(*({f.name for f in dataclasses.fields(get_method(m).config)} for m in methods))
    unknown = sorted(set(settings) - known)
    if unknown:  # a typo would otherwise change nothing, and the run be skipped as done
        raise UsageError(f"setting(s) {unknown} belong to none of the methods {methods}")
    specs = []
    # seed-major: a grid cut short has every (size, task, method) cell at one seed before any
    # cell gets its next seed
    for seed, size, task, method in itertools.product(seeds, sizes, tasks, methods):
        names = {f.name for f in dataclasses.fields(get_method(method).config)}
        extra = {k: v for k, v in settings.items() if k in names}
        values = {**extra, "task": task, "size": int(size), "seed": int(seed)}
        specs.append(RunSpec(method, values, str(runs_dir), str(results_dir), tuple(plugins)))
    for spec in specs:  # every config checked before any run starts
        try:
            spec.config().check()
        except ValueError as error:
            raise UsageError(f"{spec.method} {spec.settings}: {error}") from None
    return specs


def spec_from_result(
    result: dict[str, Any], runs_dir: str | Path, changes: dict[str, Any], plugins: tuple[str, ...] = ()
) -> RunSpec:
    """The run a result file records (the config it trained with, settings it predates at their
    value from before them; with `changes`), to train again into `runs_dir`."""
    import_plugins(plugins)
    names = {f.name for f in dataclasses.fields(get_method(result["method"]).config)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise UsageError(f"setting(s) {unknown} are not settings of method {result['method']!r}")
    settings = {**dataclasses.asdict(recorded_config(result)), **changes}
    return RunSpec(result["method"], settings, str(runs_dir), str(Path(runs_dir) / "results"), plugins)


def compare_table(recorded: list[dict[str, Any]], paths: list[Path], specs: list[RunSpec]) -> str:
    """Recorded against retrained: final accuracy and steps to 99%, one line per run."""

    def to99(result: dict[str, Any]) -> str:
        hit = result["steps_to"]["99"]
        return "-" if hit is None else str(hit["step"])

    lines = [f"{'result file':60s} {'recorded':>9s} {'again':>9s} {'diff':>7s} {'99% at':>13s}"]
    for result, path, spec in zip(recorded, paths, specs, strict=True):
        try:
            again = load_result(spec.result_path)
        except ResultError as error:
            lines.append(f"{path.name:60s} {result['final']['accuracy']:9.4f}   no new result ({error})")
            continue
        a, b = result["final"]["accuracy"], again["final"]["accuracy"]
        lines.append(f"{path.name:60s} {a:9.4f} {b:9.4f} {b - a:+7.4f} {to99(result):>6s}/{to99(again):<6s}")
    return "\n".join(lines)


def run_one(spec: RunSpec) -> dict[str, Any]:
    """Train one run in this process (quietly; Ctrl-C/SIGTERM stop it cleanly with a partial
    result), resuming it if it has a checkpoint; returns a summary."""
    start = time.perf_counter()
    try:
        import_plugins(spec.plugins)
        trainer = train(
            spec.method,
            spec.config(),
            runs_dir=spec.runs_dir,
            results_dir=Path(spec.results_dir),
            resume=spec.status() == "resume",
            quiet=True,
            stop_on_signals=True,
        )
    except Exception as e:  # one failed run must not take the grid down: report it
        return {"name": spec.name, "ok": False, "error": f"{type(e).__name__}: {e}"}
    return {
        "name": spec.name,
        "ok": True,
        "accuracy": trainer.last_eval["accuracy"],
        "steps": trainer.step,
        "stop_reason": trainer.stop_reason,
        "seconds": round(time.perf_counter() - start, 1),
    }


class Progress:
    """Runs done, running and left, printed whenever one of them changes."""

    def __init__(self, total: int, skipped: int, echo: Callable[[str], None] = print) -> None:
        self.total, self.done, self.failed, self.running = total, skipped, 0, 0
        self.echo = echo
        if skipped:
            echo(f"[bench] {skipped} of {total} runs already have a result: skipped")

    def started(self, name: str, how: str = "started") -> None:
        self.running += 1
        self.show(f"{how} {name}")

    def finished(self, summary: dict[str, Any]) -> None:
        self.running -= 1
        self.done += 1
        if summary["ok"]:
            what = f"{summary['accuracy']:.3f} after {summary['steps']} steps ({summary['stop_reason']})"
        else:
            self.failed += 1
            what = f"FAILED: {summary['error']}"
        self.show(f"finished {summary['name']}: {what}")

    def show(self, event: str) -> None:
        left = self.total - self.done - self.running
        failed = f" ({self.failed} failed)" if self.failed else ""
        self.echo(f"[bench] done {self.done}{failed} | running {self.running} | left {left} | {event}")


def run_grid(
    specs: list[RunSpec],
    backend: str = "local",
    jobs: int = 1,
    ray_address: str | None = None,
    cpus_per_run: float = 1,
    echo: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run every spec without a complete result; returns the summaries of the runs made."""
    todo = [s for s in specs if s.status() != "done"]
    progress = Progress(len(specs), len(specs) - len(todo), echo)
    if not todo:
        return []
    if backend == "local":
        return _run_local(todo, jobs, progress)
    if backend == "ray":
        return _run_ray(todo, ray_address, cpus_per_run, progress)
    raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")


def _forward_sigterm(stopping: threading.Event) -> Callable[[], None]:
    """SIGTERM to this process (`kill`, a scheduler) is passed on to the run workers, which then
    stop as `amp train` does (checkpoint, partial result), and no further run is started; without
    it the workers would go on running, orphaned, and a second `amp bench` would train the same
    run beside them. Ctrl-C reaches the workers anyway (the terminal signals the process group).
    Returns the function that restores the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: object) -> None:
        stopping.set()
        for worker in multiprocessing.active_children():
            worker.terminate()  # SIGTERM

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)


def _run_local(todo: list[RunSpec], jobs: int, progress: Progress) -> list[dict[str, Any]]:
    # spawn: a fresh interpreter per run (no torch state inherited by fork); the main module is
    # re-imported there, so a script's register_method calls hold in the workers too
    context = multiprocessing.get_context("spawn")
    out = []
    stopping = threading.Event()
    restore = _forward_sigterm(stopping)
    try:
        workers = max(1, jobs)
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=context, max_tasks_per_child=1) as pool:
            _drain(pool, todo, workers, progress, stopping, out)
    finally:
        restore()
    if stopping.is_set():
        progress.echo("[bench] stopped by SIGTERM: the same command resumes the unfinished runs")
    return out


def _drain(
    pool: cf.ProcessPoolExecutor,
    pending: Iterable[RunSpec],
    workers: int,
    progress: Progress,
    stopping: threading.Event,
    out: list[dict[str, Any]],
) -> None:
    """Keep `workers` runs going until `pending` is empty (or a SIGTERM asked to stop)."""
    pending = iter(pending)
    running: dict[cf.Future, RunSpec] = {}
    for spec in itertools.islice(pending, workers):  # submit as slots free: honest "running"
        running[pool.submit(run_one, spec)] = spec
        progress.started(spec.name)
    while running:
        finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
        for future in finished:
            spec = running.pop(future)
            try:
                summary = future.result()
            except Exception as e:  # the worker process died
                summary = {"name": spec.name, "ok": False, "error": f"{type(e).__name__}: {e}"}
            out.append(summary)
            progress.finished(summary)
            nxt = None if stopping.is_set() else next(pending, None)
            if nxt is not None:
                running[pool.submit(run_one, nxt)] = nxt
                progress.started(nxt.name)


def _run_ray(
    todo: list[RunSpec], address: str | None, cpus_per_run: float, progress: Progress
) -> list[dict[str, Any]]:
    try:
        import ray
    except ImportError:
        raise SystemExit("the ray backend needs the ray extra: pip install 'amp-envs[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    # a worker that dies (killed, out of memory) is retried once; the retry resumes the run
    remote = ray.remote(num_cpus=cpus_per_run, max_retries=1)(run_one)
    running = {remote.remote(spec): spec for spec in todo}
    for spec in todo:  # Ray schedules them all: "running" counts those waiting for a CPU there too
        progress.started(spec.name, "submitted to Ray:")
    out = []
    try:
        while running:
            finished, _ = ray.wait(list(running), num_returns=1)
            spec = running.pop(finished[0])
            try:
                summary = ray.get(finished[0])
            except Exception as e:  # the task or its worker failed
                summary = {"name": spec.name, "ok": False, "error": f"{type(e).__name__}: {e}"}
            out.append(summary)
            progress.finished(summary)
    finally:
        if started_here:
            ray.shutdown()
    return out


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """["lr=0.0003", "curriculum=none"] -> {"lr": 0.0003, "curriculum": "none"} (JSON values)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"--set takes KEY=VALUE, got {pair!r}")
        try:
            out[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.replace("-", "_")] = value
    return out
