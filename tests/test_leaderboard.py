"""Result files, `amp leaderboard`, `amp verify`, `amp bench` (local and Ray) and the
custom-method example."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from conftest import TINY_RUN

from baselines import grid
from baselines import leaderboard as lb
from baselines.cli import main as amp_main
from baselines.errors import UsageError
from baselines.io import sha256
from baselines.methods import import_plugins
from baselines.results import ResultError, is_verified, load_result, load_results, validate_result, verify

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
        "schema_version": 2,
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
    files[-1]["config"]["curriculum"] = "none"  # what the RL methods train with
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
        (lambda r: r.update(schema_version=1), "schema_version 1"),
        (lambda r: r.update(partial=True), "partial must be true exactly when"),
        (lambda r: r["final"].update(accuracy=1.5), "not in [0, 1]"),
        (lambda r: r["final"].pop("per_difficulty"), "per_difficulty is missing"),
        (lambda r: r["counts"].update(labels=-1), "counts.labels"),
        (lambda r: r.update(curve=[]), "curve is empty"),
        (lambda r: r["steps_to"].pop("99"), "steps_to.99"),
        (lambda r: r.update(seed="0"), "seed should be int"),
        (lambda r: r["config"].update(size=16), "config.size"),
        (lambda r: r["final"].update(accuracy=float("nan")), "final.accuracy is not a finite number"),
        (lambda r: r["final"].update(accuracy=5.0), "final.accuracy 5.0 is not in [0, 1]"),
        (lambda r: r["curve"][1].update(accuracy=float("inf")), "curve[1].accuracy is not a finite number"),
        (lambda r: r["curve"][1].update(accuracy=-0.5), "curve[1].accuracy -0.5 is not in [0, 1]"),
        (lambda r: r["final"]["per_difficulty"]["0"].update(accuracy=2), "per_difficulty[0].accuracy"),
        (lambda r: r["config"].update(lr="abc"), "config: lr must be a number, got 'abc'"),
        (lambda r: r["config"].update(lr=-1), "config: lr must be in"),
        (lambda r: r["config"].update(model_overrides=[1, 2]), "model_overrides must be a JSON object"),
        (lambda r: r["config"].update(model_overrides={"d_model": -1}), "d_model must be >= 1"),
        (lambda r: [d.update(task="<script>x</script>") for d in (r, r["config"])], "unknown task '<script>"),
        (lambda r: r.update(method="<b>ia</b>"), "is not a method name"),
        (lambda r: [d.update(size=10**9) for d in (r, r["config"])], "size must be in [2, 4096]"),
        (lambda r: r.update(steps=-3), "steps must be >= 0"),
        (lambda r: r.update(checkpoint="/etc/passwd"), "checkpoint must be a relative path"),
        (lambda r: r.update(checkpoint="../../x/checkpoint.pt"), "checkpoint must be a relative path"),
        (
            lambda r: r.update(weights={"path": "../../../../etc/passwd", "sha256": "0" * 64}),
            "weights.path must be",
        ),
        (
            lambda r: r.update(weights={"path": "weights/other.safetensors", "sha256": "0" * 64}),
            "weights.path must",
        ),
        (lambda r: r.update(weights={"path": "weights/bad.safetensors", "sha256": "x"}), "{path, sha256}"),
        (lambda r: r.update(verified={"ok": "yes"}), "verified must be null or"),
        (lambda r: r.update(error=3), "error must be null or text"),
        (lambda r: r.update(resumed_at=["6"]), "resumed_at must be a list of steps"),
        (lambda r: r["steps_to"].update({"90": 5}), "steps_to.90 must be null or"),
        (lambda r: r["steps_to"].update({"90": "step wall_seconds"}), "steps_to.90 must be null or"),
        (lambda r: r["counts"].update({"<img src=x>|[x](http://e)": 1}), "is not a name"),
        (lambda r: r.update(final=[]), "final should be dict"),
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


@pytest.mark.parametrize(
    "name, make, message",
    [
        ("a.json", lambda p: p.write_bytes(b"\xff\xfe{"), "cannot be read as JSON"),
        ("a.json", lambda p: p.mkdir(), "cannot be read as JSON"),
        ("a.json", lambda p: p.write_text("[" * 100_000), "cannot be read as JSON"),
        ("a.json", lambda p: p.write_text("1" * 5000), "cannot be read as JSON"),
        ("a.json", lambda p: p.write_text("[1, 2]"), "not a JSON object"),
        ("a|<b>.json", lambda p: p.write_text("{}"), "a result file is named"),
    ],
    ids=["not utf-8", "a folder", "nested 100k deep", "a 5000-digit number", "a list", "odd name"],
)
def test_a_file_that_cannot_be_read_is_refused_not_crashed_on(name, make, message, tmp_path):
    make(tmp_path / name)
    with pytest.raises(ResultError, match=message):
        load_result(tmp_path / name)
    skipped: list = []
    assert load_results(tmp_path, skipped) == [] and len(skipped) == 1


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


def test_leaderboard_reports_and_skips_a_bad_file_instead_of_aborting(tmp_path, capsys):
    write_fixture(tmp_path / "results")
    bad = fake_result("UnionFind", "ia", 2, 0.5)
    bad["final"]["accuracy"] = float("nan")
    (tmp_path / "results" / "UnionFind-n8-ia-s2-00000000.json").write_text(json.dumps(bad))
    (tmp_path / "results" / "broken.json").write_text("{not json")
    amp_main(["leaderboard", "--results-dir", str(tmp_path / "results"), "--out", str(tmp_path / "lb")])
    err = capsys.readouterr().err
    assert (
        "skipped" in err and "broken.json: not valid JSON" in err and "final.accuracy is not a finite" in err
    )
    text = (tmp_path / "lb" / "README.md").read_text()
    assert "from the 6 result files" in text and "s2-" not in text
    problems = lb.check(tmp_path / "results", tmp_path / "lb")  # CI's check fails on a bad file
    assert any("invalid result file" in p and "broken.json" in p for p in problems)


def test_text_put_into_the_markdown_tables_is_inert():
    assert lb.md("<script>alert(1)</script> | [x](javascript:y) ![i](z)") == (
        "\\<script\\>alert(1)\\</script\\> \\| \\[x\\](javascript:y) \\!\\[i\\](z)"
    )


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
def test_every_checkmark_on_the_leaderboard_is_reverified():
    """CI's check of every ✓: each result the leaderboard marks verified is re-evaluated from its
    weights in the tree (the mark is never the file's own say-so), for every method."""
    marked = [r for r in load_results(ROOT / "leaderboard" / "results") if is_verified(r)]
    assert {r["method"] for r in marked} >= {"supervised", "ia", "exit", "ia-learned-h", "ppo"}
    for result in marked:
        outcome = verify(result["_path"], record=False)
        assert outcome["ok"], (result["_path"].name, outcome)


def test_a_claimed_verification_without_weights_gets_no_checkmark(tmp_path):
    write_fixture(tmp_path / "results")
    path = next((tmp_path / "results").glob("UnionFind-n8-supervised-s0-*.json"))
    result = json.loads(path.read_text())
    result["verified"] = {"ok": True, "accuracy": 0.95, "weights_sha256": "0" * 64}
    result["weights"] = {"path": f"weights/{path.stem}.safetensors", "sha256": "0" * 64}
    path.write_text(json.dumps(result))
    lb.build(tmp_path / "results", tmp_path / "lb")
    assert "✓" not in (tmp_path / "lb" / "README.md").read_text().split("## Per task")[1]


def test_verify_runs_no_code_from_a_crafted_result(tmp_path):
    """A result whose weights are missing and whose `checkpoint` names a malicious pickle: verify
    opens neither that path nor anything else the file names."""
    import pickle

    class Boom:
        def __reduce__(self):
            return (Path.write_text, (tmp_path / "pwned", "ran"))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"step": 1000, "model": Boom()}, protocol=2))
    write_fixture(tmp_path / "lb" / "results")
    path = next((tmp_path / "lb" / "results").glob("UnionFind-n8-ia-s0-*.json"))
    result = json.loads(path.read_text())
    result["weights"] = {"path": f"weights/{path.stem}.pt", "sha256": "0" * 64}
    for checkpoint in ("../../evil.pt", str(tmp_path / "evil.pt")):
        result["checkpoint"] = checkpoint
        path.write_text(json.dumps(result))
        with pytest.raises(ResultError, match="checkpoint must be a relative path"):
            amp_verify(path)
    result["checkpoint"] = "evil.pt"
    path.write_text(json.dumps(result))
    (tmp_path / "lb" / "evil.pt").write_bytes((tmp_path / "evil.pt").read_bytes())
    with pytest.raises(ResultError, match="its weights file .* is missing"):
        amp_verify(path)
    # the weights file itself a pickle: loaded with weights_only, refused
    (tmp_path / "lb" / "weights").mkdir()
    weights = tmp_path / "lb" / "weights" / f"{path.stem}.pt"
    weights.write_bytes((tmp_path / "evil.pt").read_bytes())
    result["weights"]["sha256"] = sha256(weights)
    path.write_text(json.dumps(result))
    with pytest.raises(UsageError, match="cannot be loaded"):
        amp_verify(path)
    assert not (tmp_path / "pwned").exists()


def amp_verify(path: Path) -> dict:
    return verify(path, record=False)


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
    summary = grid.run_one(specs[0])
    assert summary["ok"] and summary["steps"] == 4 and specs[0].status() == "done"

    # a larger step budget is another run: its name says so, and it starts from scratch
    longer = grid.RunSpec(
        "supervised", {**specs[0].settings, "steps": 8}, specs[0].runs_dir, specs[0].results_dir
    )
    assert longer.name != specs[0].name and longer.status() == "new"


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
        assert longer.name == spec.name  # the time budget does not name a run
        assert longer.asks_more_time_than(result) == more, minutes
    interrupted = {**result, "stop_reason": "interrupted"}  # a partial result: resumed anyway
    assert not grid.RunSpec("ia", {**spec.settings, "max_minutes": 20.0}).asks_more_time_than(interrupted)


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


DIES_ONCE = """
import os, signal
from baselines import supervised
from baselines.methods import METHODS, Method, register_method
from baselines.supervised import SupervisedConfig


def train_step(t):
    marker = t.run.dir.parent / "killed-once"
    if t.step == 7 and not marker.exists():  # the worker dies once, in the middle of the run
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return supervised.train_step(t)


if "dies-once" not in METHODS:
    register_method("dies-once", Method(SupervisedConfig, train_step))
"""


def test_bench_on_a_local_ray_instance_survives_a_killed_worker(tmp_path):
    """A Ray worker killed mid-run: Ray retries the task, which resumes the run from its last
    checkpoint (not from scratch), and every run ends with one complete result."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")
    plugin = tmp_path / "dies_once.py"
    plugin.write_text(DIES_ONCE)
    import_plugins([str(plugin)])
    settings = {**TINY, "steps": 10, "eval_every": 2, "checkpoint_every": 2}
    specs = grid.grid(
        ["UnionFind"],
        ["supervised", "dies-once"],
        [6],
        [0],
        settings,
        tmp_path / "runs",
        None,
        (str(plugin),),
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        lines: list[str] = []
        out = grid.run_grid(specs, backend="ray", echo=lines.append)
    finally:
        ray.shutdown()
    assert [s["ok"] for s in out] == [True, True], out
    assert (tmp_path / "runs" / "killed-once").exists()  # it did die
    assert all(s.status() == "done" for s in specs)
    assert lines[-1].startswith("[bench] done 2 | running 0 | left 0")
    results = sorted((tmp_path / "runs" / "results").glob("*.json"))
    assert [p.stem for p in results] == sorted(s.name for s in specs)  # each once
    killed = load_result(specs[1].result_path)
    assert killed["resumed_at"] == [6] and killed["steps"] == 10 and not killed["partial"]
    assert load_result(specs[0].result_path)["resumed_at"] == []


# -- the worked example -----------------------------------------
def test_the_example_registers_a_method_and_gets_a_leaderboard_row(tmp_path):
    import_plugins([str(EXAMPLE)])
    import sys

    example = sys.modules["amp_plugin_custom_method"]
    before = {p: p.stat().st_mtime_ns for p in [ROOT / "README.md", *(ROOT / "leaderboard").rglob("*")]}
    result_path = example.main(["--tiny", "--steps", "4", "--leaderboard-dir", str(tmp_path / "lb")])
    assert result_path.resolve() == tmp_path / "runs" / "results" / result_path.name  # beside its run
    assert load_result(result_path)["method"] == "few-labels"
    text = (tmp_path / "lb" / "README.md").read_text()
    assert "`few-labels`" in text and "ground-truth labels" in text
    after = {p: p.stat().st_mtime_ns for p in [ROOT / "README.md", *(ROOT / "leaderboard").rglob("*")]}
    assert after == before  # the project's README and leaderboard are untouched
