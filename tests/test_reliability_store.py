"""Concurrent feature runs on one cache, and index entries confined to the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from speakergmm.datasets.synthetic import make_synthetic_corpus
from speakergmm.features import FeatureConfig, FeatureStore, FeatureStoreError, extract_data_dir
from speakergmm.features.store import cache_lock

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_synthetic_corpus(tmp_path_factory.mktemp("corpus") / "c", n_speakers=4, n_ubm_speakers=4,
                                 ubm_utterances_per_speaker=10, enroll_utterances_per_speaker=1,
                                 test_utterances_per_speaker=1, duration_range=(0.6, 0.8), seed=3)


def _features(data: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "speakergmm.cli", "features", str(data), str(out),
                             "--jobs", "1", "--no-progress"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_concurrent_runs_leave_a_consistent_cache(fsdd, tmp_path):
    # `speakergmm features d c & speakergmm features d c & wait` on a third of FSDD: before
    # the lock, the cache's index named 18 shards of which 0 to 7 existed.
    from speakergmm.corpus import make_data_dir

    make_data_dir(fsdd, tmp_path / "data", select=lambda f: int(f["index"]) <= 16)
    out = tmp_path / "feats"
    runs = [_features(tmp_path / "data", out) for _ in range(2)]
    results = [run.communicate(timeout=600) for run in runs]
    assert all(run.returncode == 0 for run in runs), results
    store = FeatureStore(out)
    assert len(store) == 1020
    index = json.loads((out / "index.json").read_text())
    shards = {e["shard"] for e in index["utterances"].values()}
    assert shards == {p.name for p in (out / "feats").glob("*.npy")}
    for utt in store:                       # every utterance readable
        assert store[utt].shape[1] == store.n_features


def test_a_second_run_waits_for_the_lock_and_says_so(corpus, tmp_path):
    out = tmp_path / "feats"
    with cache_lock(out):
        run = _features(corpus.enroll, out)
        with pytest.raises(subprocess.TimeoutExpired):
            run.wait(timeout=8)  # blocked on the lock (imports take a few seconds)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert "waiting for another extraction (pid" in err
    assert len(FeatureStore(out)) == 4


def test_a_held_lock_is_refused_without_wait_and_waited_for_otherwise(corpus, tmp_path):
    out = tmp_path / "feats"
    with cache_lock(out):
        with pytest.raises(FeatureStoreError, match=r"another feature extraction \(pid \d+\) is writing"):
            extract_data_dir(corpus.enroll, out, FeatureConfig(), jobs=1, wait=False)
    report = extract_data_dir(corpus.enroll, out, FeatureConfig(), jobs=1, wait=False)
    assert report.n_ok == 4


@pytest.mark.parametrize("shard", ["../../x.npy", "/etc/passwd", "..", "a/b.npy", ".hidden.npy", 7])
def test_index_entries_outside_the_cache_are_refused(corpus, tmp_path, shard):
    out = tmp_path / "feats"
    extract_data_dir(corpus.enroll, out, FeatureConfig(), jobs=1)
    outside = tmp_path / "x.npy"
    np.save(outside, np.zeros((3, FeatureConfig().n_features), dtype=np.float32))
    index = json.loads((out / "index.json").read_text())
    first = next(iter(index["utterances"]))
    index["utterances"][first]["shard"] = shard
    (out / "index.json").write_text(json.dumps(index))
    with pytest.raises(FeatureStoreError, match="not a file name inside feats/"):
        FeatureStore(out)
    # a rerun recomputes that entry instead of reusing it
    report = extract_data_dir(corpus.enroll, out, FeatureConfig(), jobs=1)
    assert report.n_extracted == 1 and len(FeatureStore(out)) == 4


def test_negative_rows_in_the_index_are_refused(corpus, tmp_path):
    out = tmp_path / "feats"
    extract_data_dir(corpus.enroll, out, FeatureConfig(), jobs=1)
    index = json.loads((out / "index.json").read_text())
    next(iter(index["utterances"].values()))["row"] = -5
    (out / "index.json").write_text(json.dumps(index))
    with pytest.raises(FeatureStoreError, match="has row .-5."):
        FeatureStore(out)
