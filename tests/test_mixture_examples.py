"""Every script in recipes/mixture_examples runs end to end and finds what it should."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

EXAMPLES = Path(__file__).resolve().parents[1] / "recipes" / "mixture_examples"
PNG = b"\x89PNG\r\n\x1a\n"
DEFAULT_FSDD = EXAMPLES.parents[2] / "shared" / "data" / "fsdd" / "recordings"


def fsdd_dir() -> Path | None:
    """Where the anomaly example will find FSDD (as tests/conftest.py looks), or None."""
    path = Path(os.environ.get("SPEAKERGMM_FSDD", DEFAULT_FSDD))
    return path if path.is_dir() and any(path.glob("*.wav")) else None


def run_example(name: str, out: Path, *args: str, env: dict | None = None) -> tuple[dict, str]:
    proc = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "SPEAKERGMM_PROGRESS": "0", **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "results.json").read_text()), proc.stdout


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG and path.stat().st_size > 10_000


def test_every_example_is_tested():
    scripts = {p.stem for p in EXAMPLES.glob("*.py") if not p.stem.startswith("_")}
    assert scripts == {"soft_clustering", "bic_selection", "dirichlet_process", "digits_density",
                       "anomaly_detection"}
    readme = (EXAMPLES / "README.md").read_text()
    assert all(f"{name}.py" in readme for name in scripts)


def test_soft_clustering(tmp_path):
    results, stdout = run_example("soft_clustering", tmp_path)
    assert_png(tmp_path / "soft_clustering.png")
    per_type = results["covariance_types"]
    assert set(per_type) == {"full", "tied", "diag", "spherical"}
    assert results["best_covariance_type_by_bic"] == "full"
    assert per_type["full"]["adjusted_rand_index"] > 0.75
    assert per_type["full"]["adjusted_rand_index"] > max(per_type[c]["adjusted_rand_index"]
                                                         for c in ("tied", "diag", "spherical"))
    for stats in per_type.values():
        assert 0.02 < stats["fraction_uncertain"] < 0.5  # the blobs overlap, but not everywhere
        assert sum(stats["weights"]) == pytest.approx(1.0, abs=1e-3)
    proba = results["boundary_point"]["predict_proba"]
    assert sum(proba) == pytest.approx(1.0, abs=1e-3) and 0.05 < max(proba) < 0.95
    assert "lowest BIC: full" in stdout


def test_bic_selection(tmp_path):
    results, stdout = run_example("bic_selection", tmp_path)
    assert_png(tmp_path / "selection.png")
    assert results["bic_choice"] == {"n_components": results["true_n_components"],
                                     "covariance_type": "full"}
    assert results["true_n_components"] == 4
    table = results["table"]
    assert len(table) == 8 * 4
    assert min(row["bic"] for row in table) == pytest.approx(results["bic_value"])
    with open(tmp_path / "selection.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 32
    assert "BIC chose {'n_components': 4, 'covariance_type': 'full'}" in stdout


def test_dirichlet_process_keeps_three_components(tmp_path):
    results, stdout = run_example("dirichlet_process", tmp_path)
    assert_png(tmp_path / "dirichlet_process.png")
    models = results["models"]
    dp = models["dirichlet_process"]
    assert dp["n_above_threshold"] == 3 and results["true_n_components"] == 3
    assert len(dp["weights"]) == 10 and dp["converged"]
    assert 2.9 < dp["perplexity"] < 3.3
    assert models["dirichlet_distribution"]["n_above_threshold"] == 3
    assert models["em"]["n_above_threshold"] == 10  # no prior on the weights: nothing pruned
    assert re.search(r"^dirichlet_process +3 components above 1%", stdout, re.MULTILINE)


@pytest.mark.slow
def test_digits_density_and_sampling(tmp_path):
    results, stdout = run_example("digits_density", tmp_path)
    assert_png(tmp_path / "digits_samples.png")
    assert_png(tmp_path / "digits_selection.png")
    assert results["pca_components"] == 40 and results["pca_explained_variance"] > 0.95
    choice = results["heldout_choice"]
    assert choice["n_components"] > 1
    best = max((row for row in results["table"] if row["error"] == ""),
               key=lambda row: row["heldout_log_likelihood"])
    assert (best["n_components"], best["covariance_type"]) == (choice["n_components"],
                                                               choice["covariance_type"])
    assert results["heldout_log_likelihood"] > results["heldout_log_likelihood_single_gaussian"] + 5
    confidence = results["classifier_confidence"]
    assert confidence["mixture_samples"] > confidence["single_gaussian_samples"] + 0.05
    assert confidence["mixture_samples"] > 0.7
    assert sum(results["drawn_components"]) == results["n_drawn"] == 48


def test_anomaly_detection(tmp_path):
    data = fsdd_dir()
    args = ("--data", str(data)) if data is not None else ()
    results, stdout = run_example("anomaly_detection", tmp_path, *args)
    assert_png(tmp_path / "anomaly_synthetic.png")
    synthetic = results["synthetic"]
    held_out = synthetic["false_alarm_rate"]
    assert synthetic["auc"] > 0.9
    assert held_out["precision"] > 0.7 and held_out["recall"] > 0.6
    assert held_out["false_alarm_rate"] < 0.025  # target 1%, 2000 new normal points
    assert synthetic["contamination"]["false_alarm_rate"] > held_out["false_alarm_rate"]
    fsdd = results["fsdd"]
    if data is None:
        assert "skipped" in fsdd and "fsdd: skipped" in stdout
        return
    assert_png(tmp_path / "anomaly_fsdd.png")
    assert fsdd["skipped_files"] == []
    assert fsdd["n_test_other_recordings"] == 250 and fsdd["n_test_normal_recordings"] == 50
    utterance, frame = fsdd["utterance_level"], fsdd["frame_level"]
    assert utterance["auc"] > 0.95 and utterance["recall"] > 0.7
    assert utterance["false_alarm_rate"] <= 0.1
    assert 0.55 < frame["auc"] < utterance["auc"]  # frames alone are much weaker evidence


def test_anomaly_detection_without_the_data(tmp_path):
    results, stdout = run_example("anomaly_detection", tmp_path, "--data", str(tmp_path / "none"))
    assert results["fsdd"] == {"skipped": f"no FSDD recordings at {tmp_path / 'none'}"}
    assert "fsdd: skipped" in stdout and not (tmp_path / "anomaly_fsdd.png").exists()


def test_examples_need_an_output_directory():
    proc = subprocess.run([sys.executable, str(EXAMPLES / "bic_selection.py")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--out" in proc.stderr
