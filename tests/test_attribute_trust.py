"""`attribute`'s trust verdict: the stratified Spearman (top units plus random ones) flatters an
estimate that only tells the top from the rest, so the within-top figure is reported too and the
verdict is the worse of the two."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import lazarus
from lazarus.cli.main import main
from lazarus.results.attribute import SelfCheck, Unit
from lazarus.stats.rank import spearman

DEMO = str(Path(lazarus.__file__).parent / "demo_model")


def _check(estimate: np.ndarray, real: np.ndarray, top: int) -> SelfCheck:
    units = tuple(Unit(0, "mlp_post", i, float(v)) for i, v in enumerate(estimate))
    return SelfCheck(units=units, real=tuple(float(v) for v in real), top_count=top,
                     total=100, spearman=spearman(estimate, real), pearson=0.0, seed=0,
                     spearman_top=spearman(estimate[:top], real[:top]))


def test_an_estimate_with_no_order_within_the_top_is_not_trusted():
    """Top 20 real effects far above 20 random ones; the estimate puts the top above the rest
    but orders neither group (a random shuffle): stratified Spearman ~0.75 (between-group
    share of the rank variance: 100 / 133.25), within the top ~0."""
    rng = np.random.default_rng(1)
    stratified, within = [], []
    for _ in range(200):
        real = np.r_[np.linspace(1.0, 2.0, 20), np.linspace(-0.01, 0.01, 20)]
        estimate = np.r_[rng.permutation(real[:20]), rng.permutation(real[20:])]
        stratified.append(spearman(estimate, real))
        within.append(spearman(estimate[:20], real[:20]))
    assert np.mean(stratified) == pytest.approx(0.75, abs=0.02)
    assert abs(np.mean(within)) < 0.05
    real = np.r_[np.linspace(1.0, 2.0, 20), np.linspace(-0.01, 0.01, 20)]
    estimate = np.r_[real[:20][::-1], real[20:]]  # the top in reverse order, the rest right
    check = _check(estimate, real, 20)
    print("reversed top: stratified", check.spearman, "within top", check.spearman_top)
    assert check.spearman >= 0.5
    assert check.spearman_top == pytest.approx(-1.0)
    assert check.verdict == "poor"


def test_the_verdict_is_the_worse_of_the_two_figures():
    real = np.r_[np.linspace(1.0, 2.0, 10), np.linspace(-0.01, 0.01, 10)]
    assert _check(real.copy(), real, 10).verdict == "good"
    rough = np.r_[real[:5][::-1], real[5:]]  # half the top in reverse order
    check = _check(rough, real, 10)
    print("rough top: stratified", check.spearman, "within top", check.spearman_top)
    assert check.spearman >= 0.9
    assert 0.5 <= check.spearman_top < 0.9
    assert check.verdict == "fair"
    # two top units have no order to check: undefined, and so is the verdict
    small = SelfCheck(units=_check(real[:4], real[:4], 2).units, real=tuple(real[:4]),
                      top_count=2, total=100, spearman=1.0, pearson=1.0, seed=0)
    assert small.verdict == "undetermined"


def test_the_demo_reports_both_figures_and_what_each_is_over(capsys, tmp_path):
    output = tmp_path / "attribution.json"
    code = main(["introspect", "attribute", "-m", DEMO, "--clean", "23+45=", "--corrupt",
                 "23+46=", "--answer", "68", "--wrong", "69", "-o", str(output)])
    out = capsys.readouterr().out
    assert code == 0
    check = json.loads(output.read_text())["self_check"]
    estimate = np.array([u["estimate"] for u in check["units"]])
    real = np.array([u["real"] for u in check["units"]])
    top = check["top"]
    print("demo: stratified", check["spearman"], "within top", check["spearman_top"])
    assert check["spearman"] == pytest.approx(spearman(estimate, real), abs=1e-12)
    assert check["spearman_top"] == pytest.approx(spearman(estimate[:top], real[:top]),
                                                  abs=1e-12)
    assert check["spearman_top"] > 0.9
    assert check["verdict"] == "good"
    assert f"over all 40 checked units (top and random): {check['spearman']:.3f}" in out
    assert f"within the top 20 alone (their order): {check['spearman_top']:.3f}." in out
    assert "Verdict: good (both rank correlations >= 0.9): trust the ranking." in out
    assert "rule: the worse of the two" in out
