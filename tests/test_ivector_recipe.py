"""End to end: the speechocean762 recipe (quick mode) with every back end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "speechocean762-train"

sys.path.insert(0, str(REPO / "recipes" / "so762_verification"))


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "utt2spk").is_file(), reason=f"speechocean762 data not found at {DATA}")
def test_so762_recipe_quick(tmp_path):
    import run as recipe

    results = recipe.run(DATA, tmp_path, quick=True, jobs=1)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["backends"].keys() == results["backends"].keys()
    assert set(recipe.BACKENDS) <= set(saved["backends"])
    protocol = saved["protocol"]
    assert protocol["n_background_speakers"] == 25 and protocol["n_evaluation_speakers"] == 15
    for name, entry in saved["backends"].items():
        for key in ("eer", "eer_kaldi", "min_dcf", "n_target", "n_nontarget", "eer_se", "min_dcf_se", "held_out"):
            assert key in entry, (name, key)
        assert 0.0 <= entry["eer"] < 0.5, name
        assert entry["held_out"]["actual_dcf"] >= entry["held_out"]["min_dcf"] - 1e-12
    gmm = saved["backends"]["gmm-ubm"]
    assert gmm["n_target"] == 15 * 7 and gmm["n_target"] + gmm["n_nontarget"] == 15 * 105
    assert gmm["eer"] < 0.15 and saved["backends"]["fusion"]["eer"] < 0.15
    assert (tmp_path / "det.png").stat().st_size > 0
    assert np.all(np.diff(saved["t_matrix_history"]) >= -1e-6)
    # A rerun reuses the UBM, the statistics and the T matrix.
    again = recipe.run(DATA, tmp_path, quick=True, jobs=1)
    assert again["timings"]["t_matrix"] < 2.0
    assert again["backends"]["ivector-plda"]["eer"] == pytest.approx(saved["backends"]["ivector-plda"]["eer"])


def test_protocol_keeps_speakers_apart():
    import run as recipe

    spk2utt = {f"s{i:03d}": [f"s{i:03d}_{j}" for j in range(10)] for i in range(30)}
    background, evaluation, enroll, tests = recipe.protocol(spk2utt, 20, 10, 3, seed=0)
    assert not set(background) & set(evaluation)
    assert len(background) == 20 and len(evaluation) == 10
    assert all(len(enroll[s]) == 3 for s in evaluation)
    assert len(tests) == 70 and not set(tests) & {u for s in evaluation for u in enroll[s]}
    with pytest.raises(ValueError, match="needs 25 background"):
        recipe.protocol(spk2utt, 25, 10, 3, seed=0)
