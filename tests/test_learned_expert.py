"""IA with a learned expert H': the demonstration budget, H' itself, and whole runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY_RUN, forbid_in_training_tasks, stop_after

from amp_envs.tasks import TASKS, make_task
from baselines import learned_expert
from baselines.common import EVAL_SEED, FactsAndLookups, amplify_transcripts, build_model
from baselines.learned_expert import DemoBudget, ExpertModel, LearnedExpert, LearnedHConfig, score, to_records
from baselines.methods import train
from baselines.results import load_result

TINY = dict(
    **TINY_RUN,
    threads=1,
    demos=37,
    expert_d_model=32,
    expert_layers=1,
    expert_heads=2,
    expert_batch=16,
    expert_eval_questions=32,
    expert_warmup=3,
)


def tiny(**overrides) -> LearnedHConfig:
    return LearnedHConfig(**{**TINY, **overrides})


def test_paced_demonstrations_release_a_share_per_level_a_few_at_a_time():
    from types import SimpleNamespace

    cfg = tiny(task="UnionFind", demos=30, demo_schedule="paced", demos_per_step=4)
    learned = learned_expert.LearnedExpert(cfg, make_task("UnionFind", 6), levels=3)  # shares of 10
    curriculum = SimpleNamespace(level=1, size=4, growing=True)
    t = SimpleNamespace(curriculum=curriculum)

    def give() -> int:
        n = learned.due(t)
        learned.budget.used += n  # what `demonstrate` counts
        return n

    assert [give() for _ in range(4)] == [4, 4, 2, 0]  # the first level's 10, 4 per step
    curriculum.size = 5  # an advance releases the next share
    assert [give() for _ in range(4)] == [4, 4, 2, 0]
    curriculum.size, curriculum.growing = 6, False  # complete: the rest, still 4 per step
    assert [give() for _ in range(4)] == [4, 4, 2, 0]


@pytest.mark.parametrize("schedule", ["upfront", "curriculum", "steady", "paced"])
def test_h_gives_no_more_demonstrations_than_the_budget(schedule, tmp_path, monkeypatch):
    """Every question H decomposes during training is counted, and the count never passes
    `demos`; H' only ever trains on those demonstrations."""
    task_class = type(make_task("UnionFind", 6))
    original_expert = task_class.expert
    decomposed: dict[int, int] = {}

    def counting_expert(self, questions):
        decomposed[id(self)] = decomposed.get(id(self), 0) + len(questions)
        return original_expert(self, questions)

    trained_on: list[torch.Tensor] = []
    original_score = learned_expert.score

    def recording_score(model, records, num_sub, final):
        if model.training:
            trained_on.append(records)
        return original_score(model, records, num_sub, final)

    monkeypatch.setattr(task_class, "expert", counting_expert)
    monkeypatch.setattr(learned_expert, "score", recording_score)
    cfg = tiny(
        task="UnionFind",
        demo_schedule=schedule,
        demos_per_step=4,  # "steady": 12 steps would take 48 > 37
        curriculum_threshold=0.01,
        curriculum_min_steps=2,
    )
    trainer = train("ia-learned-h", cfg, runs_dir=tmp_path, quiet=True)
    learned = trainer.extra["expert"]
    # scoring H' only, like the test set for X: its transcripts once, and H's targets at each eval
    held_out = decomposed.pop(id(learned.eval_task))
    target_questions = trainer.run.counts["held_out_expert_target_questions"]
    assert target_questions == cfg.expert_eval_questions * (cfg.steps // cfg.eval_every) > 0
    assert held_out == cfg.expert_eval_questions + target_questions
    used = sum(decomposed.values())
    assert used == learned.budget.used == trainer.run.counts["demonstrations"] <= cfg.demos
    if schedule in ("upfront", "steady"):  # the others hand out shares as the curriculum advances
        assert used == cfg.demos
    given = {tuple(r) for r in learned.records[:used].reshape(used, -1).tolist()}
    assert len(trained_on) == cfg.steps + cfg.expert_warmup - 1 == learned.updates
    for batch in trained_on:
        assert {tuple(r) for r in batch.reshape(len(batch), -1).tolist()} <= given
    if used == cfg.demos:
        with pytest.raises(RuntimeError, match="demonstrations"):
            learned.budget.expert(trainer.task)(np.zeros((1, trainer.task.question_len), np.int64))


@pytest.mark.parametrize("demo_questions", ["curriculum", "all"])
def test_demonstrations_cover_the_curriculum_or_every_question(demo_questions, tmp_path):
    """With "curriculum" H demonstrates on questions of X's current level (k <= 3 at the first level
    of permutation powering) and context size; with "all" on the whole distribution at the full size,
    whatever the curriculum, so H' sees every kind of decomposition before X gets there."""
    cfg = tiny(
        task="PermutationPower",
        size=8,
        demo_questions=demo_questions,
        demo_schedule="upfront",
        demos=64,
        curriculum="both",
        curriculum_start_size=4,
        curriculum_min_steps=100,  # never advances: the demonstrations all come from the start
        steps=2,
    )
    trainer = train("ia-learned-h", cfg, runs_dir=tmp_path, quiet=True)
    assert trainer.curriculum.level == 1 and trainer.curriculum.size == 4
    learned = trainer.extra["expert"]
    k, ok = trainer.task.power_of(learned.records[: learned.budget.used, 0, : trainer.task.question_len])
    assert ok.all() and learned.budget.used == 64
    if demo_questions == "curriculum":
        assert k.max() <= 3
    else:
        assert k.max() > 3


def test_all_pointers_at_once_equal_one_call_each():
    """H' scores its output tokens' pointers in a few batched products: the same logits as
    calling each `Pointer` on its own query."""
    from baselines.model import Pointer

    torch.manual_seed(0)
    d, features, width, j = 16, 7, 3, 5
    pointers = torch.nn.ModuleList(Pointer(d, features, width) for _ in range(j))
    queries, keys = torch.randn(2, 4, j, d), torch.randn(2, 4 * width, d)
    match = torch.randn(2, 4, 4, features)
    nothing = torch.zeros(2, 4 * width, dtype=torch.bool)
    one_each = torch.stack([p(queries[:, :, i], keys, match, nothing) for i, p in enumerate(pointers)], 2)
    torch.testing.assert_close(learned_expert.all_pointers(pointers, queries, keys, match), one_each)


def test_budget_refuses_past_its_total():
    task = make_task("PermutationPower", 8)
    budget = DemoBudget(5)
    q = task.sample_questions(task.generate(np.random.default_rng(0), 5), np.random.default_rng(1))
    next(budget.expert(task)(q[:3]))
    with pytest.raises(RuntimeError, match="5 demonstrations, 2 are left"):
        budget.expert(task)(q)
    assert budget.used == 3 and budget.left == 2


def test_tiny_run_writes_a_valid_result_file(tmp_path, capsys):
    from baselines.cli import main as amp_main

    amp_main(
        ["train", "--method", "ia-learned-h", "--task", "PermutationPower", "--demos", "40"]
        + [
            f"--{k.replace('_', '-')}={json.dumps(v) if isinstance(v, dict) else v}"
            for k, v in TINY.items()
            if k != "demos"
        ]
        + ["--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results")]
    )
    bar = capsys.readouterr().err  # the progress bar shows demonstrations used and H' agreement
    assert "demos=" in bar and "h'=" in bar
    (path,) = (tmp_path / "results").glob("PermutationPower-n6-ia-learned-h-s0-*.json")
    result = load_result(path)  # the schema every result file is validated against
    assert result["method"] == "ia-learned-h" and result["partial"] is False and result["steps"] == 12
    assert result["config"]["demos"] == 40
    expert = result["final"]["expert"]
    assert expert["demonstrations_used"] == result["counts"]["demonstrations"] <= 40
    assert result["counts"]["held_out_expert_transcripts"] == TINY["expert_eval_questions"]
    agreement = expert["agreement_with_h"]
    for key in ("next_subquestion", "final_answer", "steps", "transcripts"):
        assert 0 <= agreement[key] <= 1
    errors = agreement["errors_per_step"]
    assert set(errors) == {
        "stopped_early",
        "wrong_kind",
        "wrong_arguments",
        "did_not_stop",
        "wrong_final_answer",
    }
    assert sum(errors.values()) == pytest.approx(1 - agreement["steps"])
    assert "expert_transcripts" in result["curve"][-1] and result["counts"]["learned_expert_subquestions"] > 0
    # the targets H' gives against H's, with X' answering for both, at each of the 2 evaluations
    assert 0 <= expert["targets_agree_with_h"] <= 1 and "expert_targets" in result["curve"][-1]
    assert result["counts"]["held_out_expert_target_questions"] == 2 * TINY["expert_eval_questions"]
    assert (
        result["counts"].get("ground_truth_labels", 0) == 0 and "expert_subquestions" not in result["counts"]
    )


@pytest.mark.parametrize("name", sorted(TASKS))
def test_target_agreement_is_one_for_h_itself_and_falls_for_a_wrong_expert(name):
    """`targets_agreement` compares Amplify^{H'}(X') with Amplify^H(X'): H in H''s place agrees on
    every question; an expert that answers `?` without asking agrees only where H's target is `?`."""
    from amp_envs.tasks.base import UNKNOWN

    torch.manual_seed(0)
    cfg = tiny(task=name, size=8, expert_eval_questions=64)
    task = cfg.make_task()
    learned = LearnedExpert(cfg, task, levels=1)
    x = build_model(cfg, task)
    learned.program = learned.eval_task.expert
    assert learned.targets_agreement(x) == 1.0

    def unknown(questions):
        return np.full((len(questions), 1), UNKNOWN, np.int64)
        yield  # a generator that asks nothing

    learned.program = unknown
    ctx, q = learned.eval_questions
    view, rng = FactsAndLookups(learned.eval_task, ctx), np.random.default_rng(EVAL_SEED)
    h = amplify_transcripts(learned.eval_task, x, view, q, rng)
    assert learned.targets_agreement(x) == pytest.approx(float((h.answers[:, 0] == UNKNOWN).mean()))


@pytest.mark.parametrize("name", sorted(TASKS))
def test_h_prime_is_causal_and_decodes_what_it_scores(name):
    """H' read after record r does not depend on later records, and the transcripts it writes as
    an expert program are exactly the ones it agrees with under teacher forcing."""
    torch.manual_seed(0)
    cfg = tiny(task=name, size=8)
    task = cfg.make_task()
    model = ExpertModel(cfg.expert_model_config(), task, successor=cfg.expert_successor).eval()
    rng = np.random.default_rng(0)
    ctx = task.generate(rng, 4)
    idx = np.repeat(np.arange(4), 8)
    q = task.sample_questions(ctx, rng, task.episode_kinds, ctx_idx=idx)
    records = torch.from_numpy(to_records(task, task.run_expert(ctx, idx, q, rng)))
    with torch.no_grad():
        full = model(records)
        changed = records.clone()
        changed[:, 2:] = torch.randint(0, len(task.vocab), changed[:, 2:].shape)
        again = model(changed)
    for a, b in zip(full, again, strict=True):
        assert torch.allclose(a[:, :2], b[:, :2], atol=1e-5)

    learned = LearnedExpert(cfg, task, levels=1)
    learned.model = model
    x = build_model(cfg, task)
    t = amplify_transcripts(task, x, FactsAndLookups(task, ctx), q, rng, learned.program)
    assert (t.num_sub <= task.max_subquestions).all()
    with torch.no_grad():
        _, out = score(
            model,
            torch.from_numpy(to_records(task, t)),
            torch.from_numpy(t.num_sub),
            torch.from_numpy(t.answers[:, 0]),
        )
    assert out["ok"][out["live"]].float().mean() > 0.97  # float ties aside: the same decisions


def test_h_prime_learns_h_from_demonstrations():
    """On permutation powering, a thousand of H's transcripts teach H' to write H's transcripts
    (held out ones) in a few dozen steps."""
    torch.manual_seed(0)
    cfg = tiny(
        task="PermutationPower",
        size=8,
        demos=1024,
        expert_d_model=64,
        expert_layers=2,
        expert_batch=64,
        expert_lr=3e-3,
        expert_eval_questions=256,
    )
    task = cfg.make_task()
    learned = LearnedExpert(cfg, task, levels=1)
    rng = np.random.default_rng(0)
    ctx = task.generate(rng, 64)
    idx = np.repeat(np.arange(64), 16)
    q = task.sample_questions(ctx, rng, ctx_idx=idx)
    t = task.run_expert(ctx, idx, q, rng)  # H's demonstrations, subquestions answered correctly
    learned.budget.used = len(q)
    learned.records[:], learned.num_sub[:], learned.final[:] = to_records(task, t), t.num_sub, t.answers[:, 0]
    before = learned.agreement()["transcripts"]
    for _ in range(80):
        learned.learn(rng)
    after = learned.agreement()
    assert before < 0.2 and after["transcripts"] > 0.9, (before, after)


def test_h_prime_answers_d_plus_one_for_numbers_no_demonstration_had():
    """Union find's `depth x` ends in "depth of the parent, plus one". Taught only on parents at
    depth 0 and 1, H' with the successor pointer answers the deeper ones too."""
    torch.manual_seed(0)
    cfg = tiny(task="UnionFind", size=16, expert_d_model=64, expert_layers=2, expert_batch=64, demos=4096)
    task = cfg.make_task()
    learned = LearnedExpert(cfg, task, levels=1)
    assert learned.model.successor_pointers is not None
    rng = np.random.default_rng(0)
    ctx = task.generate(rng, 256)
    idx = np.repeat(np.arange(256), 16)
    q = task.sample_questions(ctx, rng, ["depth"], ctx_idx=idx)
    t = task.run_expert(ctx, idx, q, rng)
    depth, _ = task.vocab.number_value(t.answers[:, 0])
    records, final = to_records(task, t), t.answers[:, 0]
    seen, unseen = np.flatnonzero(depth <= 2), np.flatnonzero(depth >= 3)
    assert len(unseen) > 100
    n = learned.budget.used = len(seen)  # the demonstrations: parents at depth 0 and 1 only
    learned.records[:n], learned.num_sub[:n], learned.final[:n] = records[seen], t.num_sub[seen], final[seen]
    for _ in range(150):
        learned.learn(rng)
    held_out = (torch.from_numpy(a[unseen]) for a in (records, t.num_sub, final))
    with torch.no_grad():
        _, out = score(learned.model, *held_out)
    whole = out["ok"].sum(1) == out["live"].sum(1)
    assert whole.float().mean() > 0.9, whole.float().mean()


def test_resumed_run_continues_exactly(tmp_path):
    straight = train("ia-learned-h", tiny(), runs_dir=tmp_path / "a", quiet=True)
    train("ia-learned-h", tiny(), runs_dir=tmp_path / "b", quiet=True, on_start=stop_after(6))
    resumed = train("ia-learned-h", tiny(), runs_dir=tmp_path / "b", resume=True, quiet=True)
    assert resumed.step == straight.step and resumed.run.resumed_at == [6]
    for a, b in (
        (straight.model, resumed.model),
        (straight.extra["expert"].model, resumed.extra["expert"].model),
    ):
        for p, r in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
            assert torch.equal(p, r)
    assert straight.extra["expert"].budget.used == resumed.extra["expert"].budget.used


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="demos"):
        tiny(demos=0).validate()
    with pytest.raises(ValueError, match="demo_schedule"):
        tiny(demo_schedule="whenever").validate()
    with pytest.raises(ValueError, match="demo_questions must be one of"):
        tiny(demo_questions="some").validate()


@pytest.mark.parametrize("name", ["ShortestPath", "PermutationPower"])
def test_training_never_reads_the_ground_truth(name, tmp_path, monkeypatch):
    """Demonstrations, H' and the targets see no ground truth; scoring H' uses its own task."""
    forbid_in_training_tasks(monkeypatch, ("ground_truth", "correct"), "ia-learned-h read the ground truth")
    cfg = tiny(
        task=name, demo_schedule="steady", demos_per_step=8, curriculum="size", curriculum_start_size=4
    )
    trainer = train("ia-learned-h", cfg, runs_dir=tmp_path, quiet=True)
    assert trainer.step == cfg.steps and trainer.run.counts["demonstrations"] == 37


def test_bar_compares_the_two_experts_at_the_same_step():
    """Issue 4's bar script: the gap is read at the step budget (a longer run counts at that
    step), a run with no evaluation there fails the bar, and so does a gap over 1 point."""
    from baselines.bar_learned_h import verdict

    def result(curve, demos=None):
        final = {"accuracy": curve[-1][1]}
        if demos is not None:
            final["expert"] = {"demonstrations_used": demos}
        curve_rows = [{"step": s, "accuracy": a} for s, a in curve]
        return {"curve": curve_rows, "final": final, "steps": curve[-1][0]}

    ia = result([(500, 0.80), (1000, 0.900), (1500, 0.99)])
    assert verdict(ia, result([(1000, 0.895)], demos=20_000), 1000)["met"]
    assert verdict(ia, result([(1000, 0.91)], demos=20_000), 1000)["gap"] < 0
    assert not verdict(ia, result([(1000, 0.88)], demos=20_000), 1000)["met"]  # 2 points behind
    assert not verdict(ia, result([(1000, 0.9)], demos=60_000), 1000)["met"]  # over the budget
    assert not verdict(ia, result([(500, 0.9)], demos=20_000), 1000)["met"]  # stopped early
    assert not verdict(None, result([(1000, 0.9)], demos=20_000), 1000)["met"]


def test_bar_set_changes_only_the_learned_runs(tmp_path, capsys):
    """`--set` names ia-learned-h's run with those settings (not the default one), leaves IA's
    run as it is, and the report says which settings differ."""
    from baselines.bar_learned_h import main, specs

    def names(changed):
        runs = specs([8], 1000, 0, str(tmp_path), str(tmp_path), 1, ["ShortestPath"], changed)
        return {s.method: s.name for s in runs}

    default, spread = names(None), names({"demos": 50_000, "demos_per_step": 50})
    assert default["ia"] == spread["ia"] and default["ia-learned-h"] != spread["ia-learned-h"]
    rows = main(["--results-dir", str(tmp_path), "--tasks", "ShortestPath", "--set", "demos_per_step=50"])
    assert [r["task"] for r in rows] == ["ShortestPath"] and not rows[0]["met"]
    out = capsys.readouterr().out
    assert "ia-learned-h's settings changed from its defaults: {'demos_per_step': 50}" in out
    with pytest.raises(ValueError, match="KEY=VALUE"):
        main(["--results-dir", str(tmp_path), "--set", "demos_per_step"])
    # settings of both methods change both runs' names, and the report says so
    both = {"model_overrides": {"route_stay_prior": 3.0}}
    runs = specs([8], 1000, 0, str(tmp_path), str(tmp_path), 1, ["ShortestPath"], None, both)
    assert {s.method: s.name for s in runs}.keys() == default.keys()
    assert all(s.name not in default.values() for s in runs)
    main(
        [
            "--results-dir",
            str(tmp_path),
            "--tasks",
            "ShortestPath",
            "--set-both",
            'model_overrides={"route_stay_prior": 3.0}',
        ]
    )
    out = capsys.readouterr().out
    assert (
        "both methods' settings changed from their defaults: {'model_overrides': {'route_stay_prior': 3.0}}"
        in out
    )
