"""Shared test set-up."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def results_go_to_a_temporary_folder(tmp_path, monkeypatch):
    """No test may write into the repository's leaderboard/results."""
    import baselines.run

    monkeypatch.setattr(baselines.run, "RESULTS_DIR", tmp_path / "results")
