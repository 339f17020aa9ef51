"""What keeps runs and results safe: bad input refused in one line, committed results never
overwritten, one process per run, corrupt checkpoints and non-finite training stopped with a
clear error, signal handlers put back, `amp submit` and `amp reproduce`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_RUN, stop_after

from baselines.cli import main as amp_main
from baselines.errors import RunError, UsageError
from baselines.io import load_checkpoint, save_checkpoint, temporary_path
from baselines.methods import train
from baselines.results import load_result
from baselines.supervised import SupervisedConfig

ROOT = Path(__file__).resolve().parent.parent
# the tiny run of the tests (TINY_RUN) as command-line flags
TINY_FLAGS = [
    arg
    for key, value in {**TINY_RUN, "threads": 1}.items()
    for arg in ("--" + key.replace("_", "-"), json.dumps(value) if isinstance(value, dict) else str(value))
]


def tiny(**overrides) -> SupervisedConfig:
    return SupervisedConfig(**{**TINY_RUN, "task": "UnionFind", **overrides})


# -- the command line: one line, status 2, for every user error --------------------------------------
BAD_COMMANDS = [
    (["trian"], "unknown command 'trian' (did you mean 'train'?)"),
    (["train", "--task", "NoSuchTask"], "unknown task 'NoSuchTask'"),
    (["train", "--model-overrides", "[1, 2]"], "expected a JSON object, got '[1, 2]'"),
    (["train", "--model-overrides", "{not json"], "expected a JSON object"),
    (["train", "--model-overrides", '{"d_model": -1}'], "model setting d_model must be >= 1"),
    (["train", "--model-overrides", '{"d_model": 7}'], "d_model (7) must be a multiple of n_heads (4)"),
    (["train", "--model-overrides", '{"width": 3}'], "unknown model setting 'width'"),
    (["train", "--model-overrides", '{"dropout": "x"}'], "model setting dropout must be a number"),
    (["train", "--lr", "inf"], "lr must be a finite number, got inf"),
    (["train", "--lr", "nan"], "lr must be a finite number, got nan"),
    (["train", "--lr", "-1"], "lr must be in (0, 10]"),
    (["train", "--lr", "1e38"], "lr must be in (0, 10]"),
    (["train", "--lr", "abc"], "argument --lr: invalid float value"),
    (["train", "--grad-clip", "nan"], "grad_clip must be a finite number"),
    (["train", "--grad-clip", "0"], "grad_clip must be > 0"),
    (["train", "--lr-final-fraction", "5"], "lr_final_fraction must be in [0, 1]"),
    (["train", "--lr-warmup", "-5"], "lr_warmup must be >= 0"),
    (["train", "--max-minutes", "nan"], "max_minutes must be a finite number"),
    (["train", "--max-minutes", "-1"], "max_minutes must be >= 0"),
    (["train", "--weight-decay", "-0.1"], "weight_decay must be >= 0"),
    (["train", "--steps", "0"], "steps must be >= 1"),
    (["train", "--steps", "1.5"], "argument --steps: invalid int value"),
    (["train", "--size", "1"], "size must be in [2, 4096]"),
    (["train", "--size", "100000"], "size must be in [2, 4096]"),
    (["train", "--seed", "-1"], "seed must be >= 0"),
    (["train", "--eval-contexts", "0"], "eval_contexts must be >= 1"),
    (["train", "--threads", "0"], "threads must be >= 1"),
    (["train", "--curriculum", "sideways"], "curriculum must be one of"),
    (["train", "--curriculum-threshold", "0"], "curriculum_threshold must be in (0, 1]"),
    (["train", "--lr-schedule", "linear"], "lr_schedule must be one of"),
    (["train", "--model", "huge"], "unknown model preset 'huge'"),
    (["train", "--device", "tpu"], "device must be 'cpu', 'cuda' or 'cuda:N'"),
    (["train", "--method", "nonsense"], "argument --method: invalid choice: 'nonsense'"),
    (["train", "--resume", "--overwrite"], "pass one of them"),
    (["train", "--no-such-flag", "1"], "unrecognized arguments: --no-such-flag"),
    (["train", "--import", "no_such_module_here"], "cannot import no_such_module_here"),
    (["train", "--import", "missing_plugin.py"], "cannot import missing_plugin.py: no such file"),
    (["train", "--expert-successor", "ture", "--method", "ia-learned-h"], "expected true or false"),
    (["train", "--method", "ia", "--question-kinds", "some"], "question_kinds must be 'all' or 'main'"),
    (["train", "--method", "ia", "--ema-horizon", "0.5"], "ema_horizon must be >= 1"),
    (["train", "--method", "ia", "--task", "ShortestPath", "--curriculum", "difficulty"], "curriculum size"),
    (["train", "--method", "exit", "--temperature", "-1"], "temperature must be >= 0"),
    (["train", "--method", "ia-learned-h", "--demos", "0"], "demos must be >= 1"),
    (["train", "--method", "ppo", "--algo", "DQN"], "algo must be an on-policy SB3 algorithm"),
    (["train", "--resume", *TINY_FLAGS], "no checkpoint of run"),
    (["bench", "--set", "lr"], "--set takes KEY=VALUE, got 'lr'"),
    (["bench", "--set", "eval_evrey=5"], "belong to none of the methods"),
    (["bench", "--set", 'lr="abc"'], "lr must be a number, got 'abc'"),
    (["bench", "--jobs", "0", "--dry-run"], "--jobs must be >= 1"),
    (["bench", "--tasks", "Sudoku"], "argument --tasks: invalid choice: 'Sudoku'"),
    (["reproduce", "x.json"], "the following arguments are required: --runs-dir"),
    (["reproduce", "x.json", "--runs-dir", "r"], "x.json: no such result file"),
    (["submit", "x.json"], "x.json: no such result file"),
    (["leaderboard", "--results-dir", "."], "no valid result files"),
    (["verify"], "the following arguments are required: results"),
    (["eval"], "the following arguments are required: checkpoint"),
]


@pytest.mark.parametrize("argv, message", BAD_COMMANDS, ids=[" ".join(a)[:60] for a, _ in BAD_COMMANDS])
def test_a_bad_command_line_is_one_line_with_status_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        amp_main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert err.startswith("amp: error: ") and err.count("\n") == 1, err
    assert message in err, err


def test_amp_version_and_the_entry_point_print_no_traceback(tmp_path):
    version = subprocess.run(
        [sys.executable, "-m", "baselines.cli", "--version"], capture_output=True, text=True
    )
    assert version.returncode == 0 and version.stdout.startswith("amp 0.")
    bad = subprocess.run(
        [sys.executable, "-m", "baselines.cli", "train", "--task", "NoSuchTask"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()] and bad.stderr.startswith("amp: error:")


def test_a_missing_or_broken_checkpoint_for_eval_is_one_line(tmp_path, capsys):
    (tmp_path / "garbage.pt").write_bytes(b"\x80\x04garbage")
    for path, message in (("nothing.pt", "cannot read checkpoint"), ("garbage.pt", "is corrupt")):
        with pytest.raises(SystemExit) as exit_:
            amp_main(["eval", str(tmp_path / path)])
        err = capsys.readouterr().err
        assert exit_.value.code == 1 and err.startswith("amp: error: ") and message in err, err


# -- nothing overwrites a result ------------------------------------------------------------------------
def test_amp_train_writes_beside_its_run_and_never_into_the_project(tmp_path, capsys):
    watched = [ROOT / "README.md", *(ROOT / "leaderboard").rglob("*")]
    before = {p: p.stat().st_mtime_ns for p in watched}
    amp_main(["train", "--task", "UnionFind", "--method", "ia", *TINY_FLAGS, "--quiet"])
    (result,) = (tmp_path / "runs" / "results").glob("UnionFind-n6-ia-s0-*.json")
    assert (tmp_path / "runs" / "weights" / (result.stem + ".safetensors")).is_file()
    assert {p: p.stat().st_mtime_ns for p in watched} == before
    # the same command again would replace a complete result: refused, the file untouched
    content = result.read_bytes()
    with pytest.raises(SystemExit) as exit_:
        amp_main(["train", "--task", "UnionFind", "--method", "ia", *TINY_FLAGS, "--quiet"])
    assert exit_.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert result.read_bytes() == content
    # another step budget is another run (the budget is in its name), so nothing is replaced either
    amp_main(["train", "--task", "UnionFind", "--method", "ia", *TINY_FLAGS, "--steps", "2", "--quiet"])
    assert len(list((tmp_path / "runs" / "results").glob("*.json"))) == 2 and result.read_bytes() == content
    amp_main(["train", "--task", "UnionFind", "--method", "ia", *TINY_FLAGS, "--quiet", "--overwrite"])
    assert load_result(result)["steps"] == 12


def test_a_complete_result_in_another_folder_is_not_replaced_by_a_new_start(tmp_path):
    train("supervised", tiny(), runs_dir=tmp_path / "a", results_dir=tmp_path / "lb" / "results")
    with pytest.raises(UsageError, match="a complete result of run .* exists"):
        train("supervised", tiny(), runs_dir=tmp_path / "b", results_dir=tmp_path / "lb" / "results")


# -- one process per run ------------------------------------------------------------------------------
def test_a_second_process_on_a_running_run_is_refused(tmp_path):
    """Two `amp train` of one run: the second is refused naming the first's pid; the first goes on."""
    command = [
        sys.executable,
        "-m",
        "baselines.cli",
        "train",
        "--task",
        "UnionFind",
        "--method",
        "supervised",
    ]
    command += [*TINY_FLAGS, "--steps", "100000", "--quiet"]
    first = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("runs/*/checkpoint.pt")):  # the first is training
            assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
            time.sleep(0.2)
        second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert second.returncode == 1, second.stderr
        assert f"is in use by process {first.pid}" in second.stderr and "Traceback" not in second.stderr
        assert first.poll() is None  # untouched
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    (result,) = tmp_path.glob("runs/results/*.json")
    assert load_result(result)["stop_reason"] == "interrupted"  # the first's, stopped cleanly
    lines = (next(tmp_path.glob("runs/*/log.jsonl"))).read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines]
    assert steps == sorted(set(steps))  # one writer: no row twice


def test_temporary_files_are_per_process(tmp_path):
    assert str(os.getpid()) in temporary_path(tmp_path / "checkpoint.pt").name


# -- checkpoints: corrupt ones are refused in one line ---------------------------------------------------
@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda data: data[: len(data) // 2], "its checksum does not match"),
        (lambda data: b"", "(empty)"),
        (lambda data: b"garbage", "not a checkpoint of this version"),
        (lambda data: data[:-1000] + bytes([data[-1000] ^ 1]) + data[-999:], "its checksum does not match"),
    ],
    ids=["truncated", "empty", "garbage", "one bit flipped"],
)
def test_resuming_from_a_corrupt_checkpoint_fails_in_one_line(damage, message, tmp_path, capsys):
    argv = ["train", "--task", "UnionFind", "--method", "supervised", *TINY_FLAGS, "--quiet"]
    train("supervised", tiny(), on_start=stop_after(6), quiet=True)
    (checkpoint,) = tmp_path.glob("runs/*/checkpoint.pt")
    checkpoint.write_bytes(damage(checkpoint.read_bytes()))
    with pytest.raises(SystemExit) as exit_:
        amp_main([*argv, "--resume"])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and err.count("\n") == 1 and message in err and str(checkpoint.name) in err
    assert "--overwrite" in err  # what to do


def test_a_checkpoint_is_loaded_without_running_code(tmp_path):
    """A crafted checkpoint with a valid checksum still cannot run code: it loads weights only."""
    import pickle

    class Boom:
        def __reduce__(self):
            return (Path.write_text, (tmp_path / "pwned", "ran"))

    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"step": 1}, path)  # then the payload swapped for a pickle, checksum redone
    payload = pickle.dumps({"step": 1, "x": Boom()}, protocol=2)
    from baselines.io import CHECKPOINT_MAGIC, sha256_bytes

    path.write_bytes(CHECKPOINT_MAGIC + sha256_bytes(payload).encode() + b"\n" + payload)
    with pytest.raises(RunError, match="cannot be loaded"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


# -- non-finite training stops ----------------------------------------------------------------------------
@pytest.mark.parametrize("poison", ["loss", "weights"])
def test_a_run_whose_loss_or_weights_become_non_finite_stops_with_an_error_result(poison, tmp_path):
    from baselines import supervised
    from baselines.trainer import Trainer

    def step(t):
        if t.step == 3:  # the fourth step goes wrong
            if poison == "loss":
                t.optimise(torch.tensor(float("nan"), requires_grad=True))
            else:
                with torch.no_grad():
                    next(t.model.parameters()).fill_(float("inf"))
                t.evaluate({})
        return supervised.train_step(t)

    trainer = Trainer("supervised", tiny(eval_every=2, checkpoint_every=2), runs_dir=tmp_path, quiet=True)
    with pytest.raises(RunError, match=f"the {poison} became non-finite"):
        trainer.fit(step)
    result = load_result(trainer.result_path)
    assert result["partial"] and result["stop_reason"] == "error" and result["weights"] is None
    assert f"the {poison} became non-finite" in result["error"] and result["steps"] == 3
    assert load_checkpoint(trainer.run.checkpoint_path)["step"] == 2  # the last good state is kept


def test_a_run_that_fails_before_its_first_evaluation_writes_no_result(tmp_path):
    from baselines.trainer import Trainer

    def step(t):
        raise RuntimeError("boom")

    trainer = Trainer("supervised", tiny(), runs_dir=tmp_path, quiet=True)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(step)
    assert trainer.result_path is None and not list(tmp_path.glob("results/*.json"))


# -- signals ------------------------------------------------------------------------------------------------
def test_a_run_puts_back_the_signal_handlers_it_found():
    def mine(signum, frame):  # what a notebook or a test runner had installed
        pass

    previous = {s: signal.signal(s, mine) for s in (signal.SIGINT, signal.SIGTERM)}
    seen = {}
    try:

        def look(t):
            from baselines import supervised

            seen.update({s: signal.getsignal(s) for s in previous})
            return supervised.train_step(t)

        from baselines.methods import METHODS, Method, register_method

        if "look-at-signals" not in METHODS:
            register_method("look-at-signals", Method(SupervisedConfig, look))
        train("look-at-signals", tiny(steps=2), stop_on_signals=True, quiet=True)
        assert all(handler is not mine for handler in seen.values())  # the run's own while training
        assert all(signal.getsignal(s) is mine for s in previous)  # and ours again after
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# -- publishing and reproducing ---------------------------------------------------------------------------
def test_submit_copies_a_result_and_its_weights_and_verifies_them(tmp_path, capsys):
    trainer = train("supervised", tiny(), quiet=True)
    board = tmp_path / "board"
    amp_main(["submit", str(trainer.result_path), "--leaderboard-dir", str(board)])
    published = board / "results" / trainer.result_path.name
    assert load_result(published)["verified"]["ok"] is True
    assert (board / "weights" / (trainer.result_path.stem + ".safetensors")).is_file()
    with pytest.raises(SystemExit) as exit_:  # published once: a second submit is refused
        amp_main(["submit", str(trainer.result_path), "--leaderboard-dir", str(board)])
    assert exit_.value.code == 2 and "--overwrite" in capsys.readouterr().err
    # a partial result is not published
    partial = train("supervised", tiny(steps=18), quiet=True, on_start=stop_after(6))
    with pytest.raises(SystemExit) as exit_:
        amp_main(["submit", str(partial.result_path), "--leaderboard-dir", str(board)])
    assert exit_.value.code == 2 and "a partial result" in capsys.readouterr().err


def test_reproduce_retrains_a_result_into_a_fresh_folder_and_compares(tmp_path, capsys):
    trainer = train("supervised", tiny(), runs_dir=tmp_path / "original", quiet=True)
    amp_main(["reproduce", str(trainer.result_path), "--runs-dir", str(tmp_path / "again")])
    out = capsys.readouterr().out
    again = load_result(tmp_path / "again" / "results" / trainer.result_path.name)
    assert again["final"] == load_result(trainer.result_path)["final"]  # same machine, same seed
    assert f"{trainer.result_path.name}" in out and "+0.0000" in out
    with pytest.raises(SystemExit):
        amp_main(["reproduce", str(trainer.result_path), "--runs-dir", str(ROOT / "leaderboard" / "x")])


def test_a_submission_that_fails_verification_leaves_the_leaderboard_as_it_was(tmp_path, capsys):
    board = tmp_path / "board"
    first = train("supervised", tiny(), runs_dir=tmp_path / "a", quiet=True)
    amp_main(["submit", str(first.result_path), "--leaderboard-dir", str(board)])
    published = sorted(p.read_bytes() for p in board.rglob("*") if p.is_file())
    second = train("supervised", tiny(), runs_dir=tmp_path / "b", quiet=True)
    claimed = load_result(second.result_path)
    claimed["final"]["accuracy"] = 1.0 if claimed["final"]["accuracy"] < 0.5 else 0.0  # a wrong claim
    second.result_path.write_text(json.dumps(claimed))
    with pytest.raises(SystemExit) as exit_:
        amp_main(["submit", str(second.result_path), "--leaderboard-dir", str(board), "--overwrite"])
    assert exit_.value.code == 1 and "not published" in capsys.readouterr().err
    assert sorted(p.read_bytes() for p in board.rglob("*") if p.is_file()) == published


def test_verify_takes_only_the_runs_own_checkpoint_and_keeps_weights_that_fail(tmp_path):
    from baselines.results import ResultError, verify

    run = train("supervised", tiny(), runs_dir=tmp_path / "a", quiet=True)
    other = train("supervised", tiny(seed=1), runs_dir=tmp_path / "b", quiet=True)  # as many steps
    weights = tmp_path / "a" / "weights" / (run.result_path.stem + ".safetensors")
    before = weights.read_bytes()
    with pytest.raises(ResultError, match="is not this run's checkpoint .*seed"):
        verify(run.result_path, checkpoint=other.run.checkpoint_path)
    claimed = load_result(run.result_path)  # the run's own checkpoint, against a wrong claim
    claimed["final"]["accuracy"] = 1.0 if claimed["final"]["accuracy"] < 0.5 else 0.0
    run.result_path.write_text(json.dumps(claimed))
    outcome = verify(run.result_path, checkpoint=run.run.checkpoint_path)
    assert not outcome["ok"] and weights.read_bytes() == before
    assert load_result(run.result_path)["verified"]["weights_sha256"] is None


def test_reproduce_refuses_the_folder_the_result_is_in(tmp_path, capsys):
    trainer = train("supervised", tiny(), quiet=True)
    with pytest.raises(SystemExit) as exit_:
        amp_main(["reproduce", str(trainer.result_path), "--runs-dir", "runs"])
    assert exit_.value.code == 2 and "a folder of its own" in capsys.readouterr().err


def test_an_integer_for_a_float_setting_names_the_same_run():
    from baselines.run import config_id

    assert config_id(tiny(lr=1)) == config_id(tiny(lr=1.0))
    assert config_id(tiny(model_overrides={"route_init_std": 1})) == config_id(
        tiny(model_overrides={"route_init_std": 1.0})
    )


def test_a_plugin_that_does_not_import_is_one_line(tmp_path, capsys):
    (tmp_path / "broken_plugin.py").write_text("def oops(:\n")
    with pytest.raises(SystemExit) as exit_:
        amp_main(["train", "--import", str(tmp_path / "broken_plugin.py")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "cannot import" in err and "SyntaxError" in err and err.count("\n") == 1
