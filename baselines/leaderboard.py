"""`amp leaderboard`: leaderboard/README.md and the plots under leaderboard/plots/, built from the
result files alone (`leaderboard/results/*.json`), byte-for-byte the same every time.

Runs are grouped into rows by task, size, method and setting (every config value except the
seed and bookkeeping: different budgets or hyperparameters are different rows); a row's numbers
are the mean +- standard deviation over its seeds.

Plots (matplotlib, Agg backend, default style, no date or version in the PNG):
* accuracy-vs-steps-n<size>.png: the paper's figure, IA vs supervised, one panel per task;
  mean over seeds, shaded min to max. accuracy-vs-steps-all-n<size>.png: every method.
* per-difficulty-n<size>.png: final accuracy per difficulty class, every method.
* plots.json: for each PNG the sha256 of the data drawn and of the image, and the matplotlib
  version that drew it (PNG bytes can change with matplotlib's version; the data cannot).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import tempfile
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from baselines.results import (
    ResultError,
    config_without_seed,
    is_verified,
    load_results,
    model_settings_before_added,
    setting_id,
)

LEADERBOARD_DIR = Path(__file__).resolve().parent.parent / "leaderboard"
PROJECT_README = LEADERBOARD_DIR.parent / "README.md"
PAPER_METHODS = ("supervised", "ia")  # the paper's figure compares these two
# the information a method consumed: count key in a result file -> column name (known ones first;
# a count no method here writes yet gets a column named after its key)
COUNTS = {
    "ground_truth_labels": "ground-truth labels",
    "demonstrations": "H demonstrations",
    "expert_subquestions": "H subquestions",
    "amplified_questions": "amplified questions",
    "reward_queries": "reward queries",
    "environment_steps": "environment steps",
}
MARK_START, MARK_END = "<!-- leaderboard:start -->", "<!-- leaderboard:end -->"


@dataclass
class Row:
    """One method at one setting on one task and size, over its seeds."""

    task: str
    size: int
    method: str
    setting: str
    runs: list[dict[str, Any]]

    @property
    def accuracies(self) -> list[float]:
        return [r["final"]["accuracy"] for r in self.runs]

    @property
    def verified(self) -> int:
        return sum(is_verified(r) for r in self.runs)


def departures_from_defaults(row: Row) -> int:
    """How many of the row's settings differ from its method's current defaults (its task, size
    and budget aside; 0 for a method that is not registered here)."""
    from baselines.methods import METHODS

    method = METHODS.get(row.method)
    if method is None:
        return 0
    defaults = asdict(method.config())
    config = config_without_seed(row.runs[0])
    budget = {"task", "size", "steps", "max_minutes", "model_overrides"}
    differ = [k for k, v in config.items() if k not in budget and k in defaults and defaults[k] != v]
    run = row.runs[0]
    trained = {**run["config"].get("model_overrides", {}), **model_settings_before_added(run)}
    return len(differ) + sum(trained.get(k, v) != v for k, v in defaults["model_overrides"].items())


def method_order(methods: set[str]) -> list[str]:
    return [m for m in PAPER_METHODS if m in methods] + sorted(methods - set(PAPER_METHODS))


def group(results: list[dict[str, Any]]) -> list[Row]:
    rows: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        rows[(r["task"], r["size"], r["method"], setting_id(r))].append(r)
    out = [Row(*key, sorted(runs, key=lambda r: r["seed"])) for key, runs in rows.items()]
    order = {m: i for i, m in enumerate(method_order({r.method for r in out}))}
    return sorted(out, key=lambda r: (r.task, r.size, order[r.method], r.setting))


# -- formatting --------------------------------------------------------------------------------------
def md(text: object) -> str:
    """Text from a result file made inert in a markdown table: no HTML, links or cell breaks."""
    out = str(text)
    for char in "\\`*_[]<>|#!":
        out = out.replace(char, "\\" + char)
    return out.replace("\n", " ")


def mean_std(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    mean = scale * float(np.mean(values))
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {scale * float(np.std(values)):.{digits}f}"


def number(x: float) -> str:
    """1234567 -> 1.23M, 12345 -> 12.3k, 123 -> 123."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}" if x != int(x) else str(int(x))


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def reached(row: Row, threshold: str) -> str:
    """Mean steps and minutes to `threshold`% over the seeds that reached it, and how many did."""
    hits = [r["steps_to"][threshold] for r in row.runs if r["steps_to"][threshold] is not None]
    if not hits:
        return f"- (0/{len(row.runs)})"
    steps = float(np.mean([h["step"] for h in hits]))
    wall = float(np.mean([h["wall_seconds"] for h in hits]))
    return f"{steps:,.0f} / {minutes(wall)} ({len(hits)}/{len(row.runs)})"


def budget(config: dict[str, Any]) -> str:
    parts = [f"{config['steps']:,} steps"]
    if config.get("max_minutes", 0) > 0:
        parts.append(f"{config['max_minutes']:g} min")
    return ", ".join(parts)


def stopped(row: Row) -> str:
    reasons = defaultdict(int)
    for r in row.runs:
        reasons[r["stop_reason"]] += 1
    text = ", ".join(k if n == len(row.runs) else f"{k} {n}" for k, n in sorted(reasons.items()))
    partial = sum(r["partial"] for r in row.runs)
    return text + (f" (**partial** {partial}/{len(row.runs)})" if partial else "")


def seeds(row: Row, results_link: str) -> str:
    return ", ".join(f"[{r['seed']}]({results_link}/{r['_path'].name})" for r in row.runs)


def count_keys(rows: list[Row]) -> list[str]:
    present = {k for row in rows for r in row.runs for k in r["counts"]}
    return [k for k in COUNTS if k in present] + sorted(present - set(COUNTS))


def task_table(rows: list[Row], results_link: str) -> str:
    keys = count_keys(rows)
    head = ["method", "setting", "seeds", "budget", "accuracy %", "to 90%", "to 99%", "trained"]
    head += [*(COUNTS.get(k, k) for k in keys), "stopped", "verified"]
    align = ["---"] * 4 + ["---:"] * (4 + len(keys)) + ["---", "---"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for row in rows:
        cells = [
            f"`{row.method}`",  # a method name: letters, digits, `_.-` (the validator's pattern)
            f"`{row.setting}`",
            seeds(row, results_link),
            budget(row.runs[0]["config"]),
            mean_std(row.accuracies),
            reached(row, "90"),
            reached(row, "99"),
            f"{np.mean([r['steps'] for r in row.runs]):,.0f} / "
            + minutes(float(np.mean([r["wall_seconds"] for r in row.runs]))),
        ]
        for k in keys:
            have = [r["counts"][k] for r in row.runs if k in r["counts"]]
            cells.append(number(float(np.mean(have))) if have else "0")  # not counted: none used
        cells += [stopped(row), f"✓ {row.verified}/{len(row.runs)}" if row.verified else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main_table(rows: list[Row]) -> str:
    """Task and size by method: final accuracy (%) of each method's best-covered setting."""
    methods = method_order({r.method for r in rows})
    cells: dict[tuple[str, int], dict[str, str]] = defaultdict(dict)
    by_method: dict[tuple[str, int, str], list[Row]] = defaultdict(list)
    for row in rows:
        by_method[(row.task, row.size, row.method)].append(row)
    for (task, size, method), options in by_method.items():
        # the setting with the most seeds; between those with as many, the one closest to the
        # method's defaults (not the best-scoring: that would pick the luckiest variant), then the
        # higher mean; † marks that there are others
        def preference(r: Row) -> tuple:
            return (len(r.runs), -departures_from_defaults(r), float(np.mean(r.accuracies)), r.setting)

        best = max(options, key=preference)
        text = f"{mean_std(best.accuracies)} (n={len(best.runs)})"
        if best.verified:
            text += " ✓"
        if len(options) > 1:
            text += " †"
        cells[(task, size)][method] = text
    lines = [
        "| task | size | " + " | ".join(f"`{m}`" for m in methods) + " |",
        "|---|---:|" + "---:|" * len(methods),
    ]
    for task, size in sorted(cells):
        row = [cells[(task, size)].get(m, "") for m in methods]
        lines.append(f"| {md(task)} | {size} | " + " | ".join(row) + " |")
    return "\n".join(lines)


MAIN_LEGEND = (
    "Final test accuracy (%, mean ± standard deviation over n seeds) on the fixed held-out test set. "
    "✓: re-evaluated from its weights by `amp verify`; †: the method has other settings on this task "
    "and size (the row shown has the most seeds; between settings with as many seeds, the one "
    "closest to the method's defaults); see the per-task tables."
)


def readme(rows: list[Row], plots: list[str], n_files: int) -> str:
    out = [
        "# Leaderboard",
        "",
        f"Generated by `amp leaderboard` from the {n_files} result files in [`results/`](results/): do not "
        "edit by hand (a test checks that it is up to date). Train a run with `amp train` or `amp bench`, "
        "publish it with `amp submit runs/results/<run name>.json`, then run "
        "`amp leaderboard --project-readme README.md`.",
        "",
        "## Summary",
        "",
        MAIN_LEGEND,
        "",
        main_table(rows),
        "",
    ]
    out += [f"![{p}](plots/{p})\n" for p in plots if p.startswith("accuracy-vs-steps-n")]
    out += [
        "## Per task and size",
        "",
        "* **setting**: a hash of the method's config without the seed (different budgets or "
        "hyperparameters are different rows); **seeds** link to the result files.",
        "* **accuracy %**: final test accuracy, mean ± standard deviation over seeds.",
        "* **to 90% (99%)**: training steps / wall time until the test accuracy first reached 90% (99%) "
        "at an evaluation, mean over the seeds that reached it (how many did); **trained**: steps / wall "
        "time where the runs stopped (mean).",
        "* Information consumed (mean per run): **ground-truth labels** (answers read from the "
        "engine), **H demonstrations**, **H subquestions** (asked by the scripted expert), "
        "**amplified questions**, **reward queries**, **environment steps** (not counted: 0).",
        "* **stopped**: `steps` (step budget), `time` (time budget), `interrupted` or `error` (partial "
        "result); "
        "**verified**: seeds whose weights `amp verify` re-evaluated within 1 point.",
        "",
    ]
    for task in sorted({r.task for r in rows}):
        for size in sorted({r.size for r in rows if r.task == task}):
            here = [r for r in rows if r.task == task and r.size == size]
            out += [f"### {md(task)}, size {size}", "", task_table(here, "results"), ""]
    out += ["## Plots", ""]
    out += [f"![{p}](plots/{p})\n" for p in plots]
    return "\n".join(out).rstrip() + "\n"


# -- plots --------------------------------------------------------------------------------------------
def mean_curve(runs: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Accuracy against steps, averaged over seeds on the steps every seed reached."""
    curves = [
        (np.array([c["step"] for c in r["curve"]]), np.array([c["accuracy"] for c in r["curve"]]))
        for r in runs
    ]
    last = min(int(s[-1]) for s, _ in curves)
    grid = np.unique(np.concatenate([s[s <= last] for s, _ in curves]))
    ys = np.stack([np.interp(grid, s, a) for s, a in curves])
    return {
        "step": grid.tolist(),
        "mean": ys.mean(0).tolist(),
        "min": ys.min(0).tolist(),
        "max": ys.max(0).tolist(),
    }


def per_difficulty(runs: list[dict[str, Any]], classes: list[int]) -> dict[str, list[float]]:
    """Final accuracy per difficulty class: mean and std over seeds (NaN: no such question)."""
    acc = [
        [r["final"]["per_difficulty"].get(str(d), {}).get("accuracy", np.nan) for d in classes] for r in runs
    ]
    a = np.array(acc, dtype=float)
    with warnings.catch_warnings():  # a class no seed has is NaN on purpose (shown as 0)
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, std = np.nanmean(a, 0), np.nanstd(a, 0)
    return {"difficulty": classes, "mean": np.nan_to_num(mean).tolist(), "std": np.nan_to_num(std).tolist()}


def _label(row: Row, rows: list[Row]) -> str:
    several = sum(r.method == row.method for r in rows) > 1
    return f"{row.method}" + (f" [{row.setting}]" if several else "") + f" (n={len(row.runs)})"


def _colors(rows: list[Row]) -> dict[str, str]:
    return {m: f"C{i % 10}" for i, m in enumerate(method_order({r.method for r in rows}))}


def _panels(n: int):  # noqa: ANN202  (matplotlib figure and axes)
    import matplotlib.pyplot as plt

    cols = min(3, n)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.flat


def plot_curves(rows: list[Row], title: str) -> tuple[Any, dict]:
    colors = _colors(rows)
    tasks = sorted({r.task for r in rows})
    fig, axes = _panels(len(tasks))
    data: dict[str, Any] = {}
    for ax, task in zip(axes, tasks, strict=False):
        here = [r for r in rows if r.task == task]
        for i, row in enumerate(here):
            c = mean_curve(row.runs)
            label = _label(row, here)
            data[f"{task}/{label}"] = c
            style = "-" if i == 0 or here[i - 1].method != row.method else "--"
            ax.plot(c["step"], c["mean"], style, color=colors[row.method], label=label)
            if len(row.runs) > 1:
                ax.fill_between(c["step"], c["min"], c["max"], color=colors[row.method], alpha=0.2, lw=0)
        ax.set_title(task)
        ax.set_xlabel("training steps")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig, data


def plot_difficulty(rows: list[Row], title: str) -> tuple[Any, dict]:
    colors = _colors(rows)
    tasks = sorted({r.task for r in rows})
    fig, axes = _panels(len(tasks))
    data: dict[str, Any] = {}
    for ax, task in zip(axes, tasks, strict=False):
        here = [r for r in rows if r.task == task]
        classes = sorted({int(d) for row in here for r in row.runs for d in r["final"]["per_difficulty"]})
        width = 0.8 / len(here)
        for i, row in enumerate(here):
            d = per_difficulty(row.runs, classes)
            label = _label(row, here)
            data[f"{task}/{label}"] = d
            x = np.arange(len(classes)) + (i - (len(here) - 1) / 2) * width
            err = d["std"] if len(row.runs) > 1 else None
            ax.bar(x, d["mean"], width, yerr=err, color=colors[row.method], label=label, capsize=2)
        ax.set_xticks(np.arange(len(classes)), [str(c) for c in classes])
        ax.set_title(task)
        ax.set_xlabel("difficulty class")
        ax.set_ylabel("final test accuracy")
        ax.set_ylim(0, 1.3)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=7, loc="upper center", ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    return fig, data


def data_hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def write_plots(rows: list[Row], plots_dir: Path) -> list[str]:
    """Draw every plot into `plots_dir`; returns the file names (plots.json included)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots_dir.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, Any, dict]] = []
    with matplotlib.rc_context():
        matplotlib.rcdefaults()  # no user matplotlibrc: the same pixels everywhere
        for size in sorted({r.size for r in rows}):
            here = [r for r in rows if r.size == size]
            paper = [r for r in here if r.method in PAPER_METHODS]
            if paper:
                title = f"Iterated Amplification vs supervised learning, size {size}"
                figures.append((f"accuracy-vs-steps-n{size}.png", *plot_curves(paper, title)))
            if {r.method for r in here} - set(PAPER_METHODS):
                title = f"Every method, size {size}"
                figures.append((f"accuracy-vs-steps-all-n{size}.png", *plot_curves(here, title)))
            title = f"Final accuracy per difficulty class, size {size}"
            figures.append((f"per-difficulty-n{size}.png", *plot_difficulty(here, title)))
        manifest = {}
        for name, fig, data in figures:
            path = plots_dir / name
            # no Software/date chunks: the PNG depends on the data and matplotlib's version only
            fig.savefig(path, dpi=100, metadata={"Software": None})
            plt.close(fig)
            manifest[name] = {
                "data_sha256": data_hash(data),
                "png_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            }
    manifest_file = {"matplotlib": matplotlib.__version__, "plots": manifest}
    (plots_dir / "plots.json").write_text(json.dumps(manifest_file, indent=1, sort_keys=True) + "\n")
    return [name for name, _, _ in figures]


# -- building and checking -----------------------------------------------------------------------------
def project_section(rows: list[Row], plots: list[str], leaderboard_link: str) -> str:
    """What the project's README shows between its leaderboard markers."""
    lines = [
        MARK_START,
        "",
        MAIN_LEGEND + f" Full tables: [{leaderboard_link}/README.md]({leaderboard_link}/README.md).",
        "",
    ]
    lines += [main_table(rows), ""]
    lines += [f"![{p}]({leaderboard_link}/plots/{p})\n" for p in plots if p.startswith("accuracy-vs-steps-n")]
    return "\n".join(lines).rstrip() + "\n\n" + MARK_END


def update_project_readme(text: str, section: str) -> str:
    if MARK_START not in text or MARK_END not in text:
        raise ValueError(f"the project README needs the markers {MARK_START} and {MARK_END}")
    head, rest = text.split(MARK_START, 1)
    _, tail = rest.split(MARK_END, 1)
    return head + section + tail


def build(
    results_dir: Path = LEADERBOARD_DIR / "results",
    out_dir: Path = LEADERBOARD_DIR,
    project_readme: Path | None = None,
    skipped: list[ResultError] | None = None,
) -> list[Path]:
    """Write out_dir/README.md and out_dir/plots/ (and the project README's leaderboard section,
    if given); returns the files written. A bad result file raises `ResultError`, or, given a
    `skipped` list, goes there and is left out."""
    results = load_results(results_dir, skipped)
    if not results:
        raise ResultError(f"{results_dir}: no valid result files")
    rows = group(results)
    plots = write_plots(rows, out_dir / "plots")
    (out_dir / "README.md").write_text(readme(rows, plots, len(results)))
    written = [out_dir / "README.md", *(out_dir / "plots" / p for p in [*plots, "plots.json"])]
    if project_readme is not None:
        link = str(Path(out_dir).resolve().relative_to(project_readme.resolve().parent))
        text = update_project_readme(project_readme.read_text(), project_section(rows, plots, link))
        project_readme.write_text(text)
        written.append(project_readme)
    return written


def check(
    results_dir: Path = LEADERBOARD_DIR / "results",
    out_dir: Path = LEADERBOARD_DIR,
    project_readme: Path | None = None,
) -> list[str]:
    """Rebuild into a temporary folder and compare with `out_dir`: the README byte for byte, the
    plots by the hash of their data (and byte for byte when drawn by the same matplotlib version),
    and the project README's section. Every result file must be valid. Returns the differences
    (empty: up to date)."""
    skipped: list[ResultError] = []
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        plots = [p.name for p in build(results_dir, fresh, skipped=skipped) if p.suffix == ".png"]
        problems += [f"invalid result file: {error}" for error in skipped]
        if project_readme is not None:
            link = str(Path(out_dir).resolve().relative_to(project_readme.resolve().parent))
            section = project_section(group(load_results(results_dir, [])), plots, link)
            if section not in _read(project_readme):
                problems.append(f"{project_readme}: the leaderboard section is out of date")
        new, old = (fresh / "README.md").read_text(), _read(out_dir / "README.md")
        if new != old:
            diff = difflib.unified_diff(
                old.splitlines(), new.splitlines(), "committed", "rebuilt", lineterm=""
            )
            problems.append("README.md is out of date:\n" + "\n".join(list(diff)[:40]))
        new_m = json.loads((fresh / "plots" / "plots.json").read_text())
        old_m = json.loads(_read(out_dir / "plots" / "plots.json") or "{}")
        old_plots = old_m.get("plots", {})
        for name, entry in new_m["plots"].items():
            if name not in old_plots:
                problems.append(f"plots/{name} is missing")
            elif entry["data_sha256"] != old_plots[name]["data_sha256"]:
                problems.append(f"plots/{name} shows other data than the results")
            elif new_m["matplotlib"] == old_m.get("matplotlib"):
                png = out_dir / "plots" / name
                if not png.exists() or (fresh / "plots" / name).read_bytes() != png.read_bytes():
                    problems.append(f"plots/{name} differs byte for byte (same matplotlib version)")
        problems += [
            f"plots/{name} is stale (no result draws it)" for name in set(old_plots) - set(new_m["plots"])
        ]
    return problems


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""
