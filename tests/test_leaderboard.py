"""Result files, `amp leaderboard`, `amp verify`, `amp bench` (local and Ray) and the
custom-method example."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from conftest import TINY_RUN

import baselines.run
from baselines import grid
from baselines import leaderboard as lb
from baselines.cli import import_plugins
from baselines.cli import main as amp_main
from baselines.methods import train
from baselines.results import ResultError, load_result, load_results, validate_result, verify
from baselines.supervised import SupervisedConfig

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "custom_method.py"
TINY = {k: v for k, v in TINY_RUN.items() if k != "size"}  # (size is given per test)
TINY |= dict(steps=4, eval_every=2, checkpoint_every=2, threads=1)


def fake_result(task: str, method: str, seed: int, accuracy: float, **extra) -> dict:
    """A valid result file's content, as `amp train` writes it."""
    config = {"task": task, "size": 8, "seed": seed, "steps": 1000, "max_minutes": 3.0, "lr": 0.001}
    curve = [
        {"step": s, "wall_seconds": s / 10, "questions": s * 100, "accuracy": accuracy * s / 1000}
        for s in (250, 500, 750, 1000)
    ]
    result = {
        "schema_version": 1,
        "task": task,
        "size": 8,
        "method": method,
        "seed": seed,
        "config": config,
        "commit": "0" * 40,
        "machine": {"cpus": 2},
        "command": f"amp train --task {task} --method {method} --seed {seed}",
        "partial": False,
        "stop_reason": "steps",
        "steps": 1000,
        "wall_seconds": 100.0,
        "final": {
            "accuracy": accuracy,
            "per_difficulty": {"0": {"accuracy": 1.0, "count": 10}, "1": {"accuracy": accuracy, "count": 6}},
        },
        "counts": {"ground_truth_labels": 1000 * (seed + 1)},
        "steps_to": {
            "90": {"step": 1000, "wall_seconds": 100.0, "questions": 1} if accuracy >= 0.9 else None,
            "99": None,
        },
        "curve": curve,
    }
    result.update(extra)
    return result


def write_fixture(results_dir: Path) -> None:
    results_dir.mkdir(parents=True)
    files = [
        fake_result("UnionFind", "supervised", 0, 0.95),
        fake_result("UnionFind", "supervised", 1, 0.91),
        fake_result("UnionFind", "ia", 0, 0.80, counts={"expert_subquestions": 5000}),
        fake_result("UnionFind", "exit", 0, 0.5, counts={"reward_queries": 7}),
        fake_result("EvalSum", "ia", 0, 0.4, partial=True, stop_reason="interrupted"),
        fake_result("EvalSum", "ppo", 0, 0.3, counts={"environment_steps": 123456}),
    ]
    for r in files:
        name = f"{r['task']}-n8-{r['method']}-s{r['seed']}-00000000.json"
        (results_dir / name).write_text(json.dumps(r, indent=1) + "\n")


def test_the_main_table_shows_the_default_setting_when_seeds_tie():
    """Between settings with as many seeds, the main table shows the method as it ships, not
    whichever variant happened to score best; more seeds still win."""
    default = fake_result("UnionFind", "supervised", 0, 0.60)
    variant = fake_result("UnionFind", "supervised", 0, 0.90)
    variant["config"]["lr"] = 0.003
    table = lb.main_table(lb.group([default, variant]))
    assert "60.0 (n=1) †" in table and "90.0" not in table
    second = fake_result("UnionFind", "supervised", 1, 0.80)
    second["config"]["lr"] = 0.003
    table = lb.main_table(lb.group([default, variant, second]))
    assert "85.0 ± 5.0 (n=2) †" in table


# -- result files -----------------------------------------
def test_committed_result_files_are_valid():
    assert load_results(ROOT / "leaderboard" / "results")
    assert load_results(ROOT / "leaderboard" / "learned-h-bar" / "results")  # issue 4's bar runs


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.pop("final"), "missing final"),
        (lambda r: r.update(schema_version=2), "schema_version 2"),
        (lambda r: r.update(partial=True), "partial must be true exactly when"),
        (lambda r: r["final"].update(accuracy=1.5), "not in [0, 1]"),
        (lambda r: r["final"].pop("per_difficulty"), "per_difficulty is missing"),
        (lambda r: r["counts"].update(labels=-1), "counts.labels"),
        (lambda r: r.update(curve=[]), "curve is empty"),
        (lambda r: r["steps_to"].pop("99"), "steps_to.99"),
        (lambda r: r.update(seed="0"), "seed should be int"),
        (lambda r: r["config"].update(size=16), "config.size"),
    ],
)
def test_a_malformed_or_incomplete_result_is_refused_clearly(change, message, tmp_path):
    result = fake_result("UnionFind", "ia", 0, 0.5)
    validate_result(copy.deepcopy(result))
    change(result)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(result))
    with pytest.raises(ResultError, match="bad.json") as e:
        load_result(path)
    assert message in str(e.value)


def test_a_file_that_is_not_json_is_refused(tmp_path):
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ResultError, match="x.json: not valid JSON"):
        load_results(tmp_path)


# -- the leaderboard -----------------------------------------
def test_leaderboard_is_byte_for_byte_reproducible(tmp_path):
    write_fixture(tmp_path / "results")
    a, b = tmp_path / "a", tmp_path / "b"
    files_a = lb.build(tmp_path / "results", a)
    lb.build(tmp_path / "results", b)
    for path in files_a:
        assert path.read_bytes() == (b / path.relative_to(a)).read_bytes(), path.name
    names = {p.name for p in files_a}
    assert {"accuracy-vs-steps-n8.png", "accuracy-vs-steps-all-n8.png", "per-difficulty-n8.png"} <= names
    assert lb.check(tmp_path / "results", a) == []
    # PNGs carry no date or software version
    png = (a / "plots" / "accuracy-vs-steps-n8.png").read_bytes()
    assert b"Software" not in png and b"matplotlib" not in png

    text = (a / "README.md").read_text()
    assert "93.0 ± 2.0" in text  # supervised on union find: seeds 0.95 and 0.91
    for column in ("ground-truth labels", "H subquestions", "reward queries", "environment steps"):
        assert column in text
    assert "**partial** 1/1" in text and "interrupted" in text
    assert "- (0/1)" in text and "1,000 / 1.7 min (2/2)" in text


def test_leaderboard_check_sees_a_stale_table_and_plot(tmp_path):
    write_fixture(tmp_path / "results")
    lb.build(tmp_path / "results", tmp_path / "lb")
    extra = fake_result("UnionFind", "ia", 1, 0.7)
    (tmp_path / "results" / "UnionFind-n8-ia-s1-00000000.json").write_text(json.dumps(extra))
    problems = lb.check(tmp_path / "results", tmp_path / "lb")
    assert any("README.md is out of date" in p for p in problems)
    assert any("accuracy-vs-steps-n8.png shows other data" in p for p in problems)


def test_project_readme_section_is_replaced_between_markers(tmp_path):
    write_fixture(tmp_path / "results")
    readme = tmp_path / "README.md"
    readme.write_text(f"# P\n\nbefore\n\n{lb.MARK_START}\nold\n{lb.MARK_END}\n\nafter\n")
    lb.build(tmp_path / "results", tmp_path / "leaderboard", readme)
    text = readme.read_text()
    assert "old" not in text and text.startswith("# P\n\nbefore") and text.endswith("after\n")
    assert "| UnionFind | 8 |" in text and "leaderboard/plots/accuracy-vs-steps-n8.png" in text
    assert lb.check(tmp_path / "results", tmp_path / "leaderboard", readme) == []


def test_committed_leaderboard_is_up_to_date():
    """CI's check: leaderboard/README.md, the plots (their data; their bytes when drawn by the same
    matplotlib version) and the project README's section match the committed result files."""
    problems = lb.check(ROOT / "leaderboard" / "results", ROOT / "leaderboard", ROOT / "README.md")
    assert problems == [], "run `amp leaderboard`:\n" + "\n".join(problems)


# -- verification -----------------------------------------
def test_verify_passes_on_a_committed_run_of_every_method():
    by_method: dict[str, list[Path]] = {}
    for path in sorted((ROOT / "leaderboard" / "results").glob("*.json")):
        by_method.setdefault(load_result(path)["method"], []).append(path)
    for method, paths in by_method.items():
        with_weights = [p for p in paths if (ROOT / "leaderboard" / "weights" / (p.stem + ".pt")).exists()]
        assert with_weights, (
            f"no committed weights for any {method} run: run `amp verify` on one of its results (with its "
            "run folder's checkpoint) and `git add -f leaderboard/weights/<run name>.pt`"
        )
        outcome = verify(with_weights[0], record=False)
        assert outcome["ok"], outcome
        assert outcome["accuracy"] == load_result(with_weights[0])["final"]["accuracy"]  # deterministic


def test_a_run_writes_weights_that_verify_reloads(tmp_path, capsys):
    trainer = train("supervised", SupervisedConfig(task="UnionFind", size=6, **TINY), runs_dir=tmp_path)
    path = trainer.result_path
    result = load_result(path)
    weights = path.parent.parent / result["weights"]["path"]
    assert weights.exists() and weights.stat().st_size < 200_000  # the model alone
    amp_main(["verify", str(path)])
    assert "OK" in capsys.readouterr().out
    assert load_result(path)["verified"]["ok"] is True
    lb.build(path.parent, tmp_path / "lb")
    assert "✓ 1/1" in (tmp_path / "lb" / "README.md").read_text()

    result["final"]["accuracy"] = 1.0 if result["final"]["accuracy"] < 0.5 else 0.0  # a wrong claim
    path.write_text(json.dumps(result))
    with pytest.raises(SystemExit):
        amp_main(["verify", str(path)])
    assert load_result(path)["verified"]["ok"] is False

    weights.unlink()
    (tmp_path / trainer.run.name / "checkpoint.pt").unlink()
    with pytest.raises(ResultError, match="no weights to verify"):
        verify(path)


# -- amp bench -----------------------------------------
def tiny_grid(tmp_path: Path, methods: list[str], plugins: tuple[str, ...] = ()) -> list[grid.RunSpec]:
    return grid.grid(["UnionFind"], methods, [6], [0], TINY, tmp_path / "runs", tmp_path / "results", plugins)


def test_bench_runs_a_grid_in_processes_skips_what_is_done_and_resumes(tmp_path):
    import_plugins([str(EXAMPLE)])  # registers few-labels here; the workers import it themselves
    specs = tiny_grid(tmp_path, ["supervised", "few-labels"], plugins=(str(EXAMPLE),))
    lines: list[str] = []
    out = grid.run_grid(specs, jobs=2, echo=lines.append)
    assert [s["ok"] for s in out] == [True, True], out
    assert all(s.result_path.exists() and s.status() == "done" for s in specs)
    assert any("done 2 | running 0 | left 0" in line for line in lines), lines
    assert grid.run_grid(specs, echo=lines.append) == []  # everything is done: skipped
    assert "2 of 2 runs already have a result" in lines[-1]

    # an interrupted run (partial result, checkpoint kept) is resumed, the rest skipped
    result = load_result(specs[0].result_path)
    result.update(partial=True, stop_reason="interrupted")
    specs[0].result_path.write_text(json.dumps(result))
    assert specs[0].status() == "resume"
    more = {**TINY, "steps": 6}  # a resume may extend the budget
    spec = grid.RunSpec("supervised", {**specs[0].settings, **more}, specs[0].runs_dir, specs[0].results_dir)
    assert spec.name == specs[0].name and spec.status() == "resume"
    summary = grid.run_one(spec)
    assert summary["ok"] and summary["steps"] == 6 and spec.status() == "done"

    # a larger budget than a finished run stopped on continues it (its name has no budget in it)
    longer = grid.RunSpec("supervised", {**spec.settings, "steps": 8}, spec.runs_dir, spec.results_dir)
    assert longer.name == spec.name and longer.status() == "resume" and spec.status() == "done"
    assert grid.run_one(longer)["steps"] == 8 and longer.status() == "done"
    assert load_result(longer.result_path)["steps"] == 8


def test_bench_passes_sigterm_on_to_its_runs_and_starts_no_more(tmp_path):
    """`kill <amp bench>`: the running run stops as `amp train` does (a partial result, resumable),
    the next run is not started, and no worker is left training on its own."""
    import contextlib
    import os
    import signal
    import subprocess
    import sys
    import time

    settings = {**TINY, "steps": 1_000_000, "max_minutes": 10.0}
    command = [sys.executable, "-m", "baselines.cli", "bench", "--tasks", "UnionFind"]
    command += ["--methods", "supervised", "--sizes", "6", "--seeds", "0", "1"]
    command += ["--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results")]
    command += ["--set", *(f"{k}={json.dumps(v)}" for k, v in settings.items())]
    bench = subprocess.Popen(  # its own process group, so that a failure here leaves no orphan
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while not list((tmp_path / "runs").glob("*/checkpoint.pt")):  # the first run is training
            assert bench.poll() is None and time.monotonic() < deadline, bench.stdout.read()
            time.sleep(0.5)
        bench.send_signal(signal.SIGTERM)
        out, _ = bench.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(bench.pid, signal.SIGKILL)
    assert "stopped by SIGTERM" in out, out
    results = list((tmp_path / "results").glob("*.json"))
    assert [load_result(p)["stop_reason"] for p in results] == ["interrupted"], out
    assert load_result(results[0])["partial"] is True
    assert results[0].name.startswith("UnionFind-n6-supervised-s0")
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [results[0].stem]  # seed 1 never started


def test_bench_extends_a_run_that_ran_out_of_time_only_when_given_more(tmp_path):
    spec = tiny_grid(tmp_path, ["ia"])[0]
    result = {"stop_reason": "time", "steps": 3, "config": {"steps": 4, "max_minutes": 3.0}}
    for minutes, more in ((3.0, False), (2.0, False), (20.0, True), (0.0, True)):
        longer = grid.RunSpec("ia", {**spec.settings, "max_minutes": minutes})
        assert longer.asks_more_than(result) == more, minutes
    interrupted = {**result, "stop_reason": "interrupted"}  # a partial result: resumed anyway
    assert not grid.RunSpec("ia", {**spec.settings, "max_minutes": 20.0}).asks_more_than(interrupted)


def test_bench_refuses_a_setting_no_method_has(tmp_path):
    with pytest.raises(ValueError, match="eval_evrey"):
        grid.grid(["UnionFind"], ["supervised", "ia"], [6], [0], {"eval_evrey": 5}, tmp_path, tmp_path)


def test_bench_cli_dry_run_lists_the_grid(tmp_path, capsys):
    amp_main(
        ["bench", "--tasks", "UnionFind", "EvalSum", "--methods", "ia", "--seeds", "0", "1", "--dry-run"]
        + ["--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results")]
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all(line.startswith("new") for line in lines)
    # seed-major: a grid cut short has every cell at seed 0 before any cell at seed 1
    assert ["-s0-" in line for line in lines] == [True, True, False, False]
    assert any("UnionFind-n8-ia-s1-" in line for line in lines)
    amp_main(["bench", "--methods", "ia", "--seeds", "0", "--dry-run", "--runs-dir", str(tmp_path / "r")])
    default = capsys.readouterr().out
    assert default.count("new") == 5 and "EvalSum" not in default  # the five benchmark tasks


def test_bench_on_a_local_ray_instance(tmp_path):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")
    specs = tiny_grid(tmp_path, ["supervised", "ia"])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        lines: list[str] = []
        out = grid.run_grid(specs, backend="ray", echo=lines.append)
    finally:
        ray.shutdown()
    assert [s["ok"] for s in out] == [True, True], out
    assert all(s.status() == "done" for s in specs)
    assert lines[-1].startswith("[bench] done 2 | running 0 | left 0")


# -- the worked example -----------------------------------------
def test_the_example_registers_a_method_and_gets_a_leaderboard_row(tmp_path):
    import_plugins([str(EXAMPLE)])
    import sys

    example = sys.modules["amp_plugin_custom_method"]
    result_path = example.main(
        ["--tiny", "--steps", "4", "--runs-dir", str(tmp_path / "runs")]
        + ["--results-dir", str(tmp_path / "lb" / "results"), "--leaderboard-dir", str(tmp_path / "lb")]
    )
    assert load_result(result_path)["method"] == "few-labels"
    text = (tmp_path / "lb" / "README.md").read_text()
    assert "`few-labels`" in text and "ground-truth labels" in text
    assert baselines.run.RESULTS_DIR != tmp_path / "lb" / "results"  # the repository's is untouched
