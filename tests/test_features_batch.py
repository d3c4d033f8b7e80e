"""Batch extraction into the feature cache: bad files, reports, exit status, reuse, resume,
the FeatureStore reader and the ``speakergmm features`` command."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speakergmm.corpus import CorpusError, make_data_dir, read_data_dir
from speakergmm.features import (EXIT_SKIPPED, FeatureConfig, FeatureStore, FeatureStoreError,
                                 extract_data_dir, extract_features)
from speakergmm.features import store as store_module

GOOD_FILES = ["0_george_5.wav", "1_jackson_6.wav", "2_lucas_7.wav", "3_nicolas_8.wav",
              "4_theo_9.wav", "5_yweweler_10.wav"]

# the bad cases: utterance id -> (how to make the file, a fragment of the reason)
BAD = {
    "bad-missing": (None, "audio file not found"),
    "bad-unreadable": (lambda p: p.write_bytes(b"RIFF\x00\x00junk" * 20), "unreadable audio"),
    "bad-emptyfile": (lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
    "bad-nosamples": (lambda p: sf.write(p, np.zeros(0), 8000), "empty audio (0 samples)"),
    "bad-allzero": (lambda p: sf.write(p, np.zeros(8000), 8000), "silent audio"),
    "bad-tooshort": (lambda p: sf.write(p, np.full(120, 0.2), 8000), "too short"),
    "bad-nospeech": (lambda p: sf.write(p, np.random.default_rng(1).normal(0, 3e-4, 8000), 8000), "no speech"),
    "bad-directory": (lambda p: p.mkdir(), "not a regular file (a directory)"),
}


@pytest.fixture()
def mixed_dir(fsdd, tmp_path) -> Path:
    """A data directory of six good FSDD recordings and one utterance per bad case."""
    audio = tmp_path / "audio"
    audio.mkdir()
    lines, spk = [], []
    for name in GOOD_FILES:
        digit, speaker, index = Path(name).stem.split("_")
        lines.append(f"{speaker}-{Path(name).stem} {fsdd / name}")
        spk.append(f"{speaker}-{Path(name).stem} {speaker}")
    for utt, (make, _) in BAD.items():
        path = audio / f"{utt}.wav"
        if make is not None:
            make(path)
        lines.append(f"{utt} {path}")
        spk.append(f"{utt} bad")
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text("\n".join(sorted(lines)) + "\n")
    (data / "utt2spk").write_text("\n".join(sorted(spk)) + "\n")
    return data


def _good_utts():
    return sorted(f"{Path(n).stem.split('_')[1]}-{Path(n).stem}" for n in GOOD_FILES)


def _check_mixed_result(out: Path, fsdd: Path, config: FeatureConfig) -> None:
    report = json.loads((out / "report.json").read_text())
    assert report["n_utterances"] == len(GOOD_FILES) + len(BAD)
    assert report["n_ok"] == len(GOOD_FILES) and report["n_skipped"] == len(BAD)
    assert report["exit_status"] == EXIT_SKIPPED
    reasons = {s["utt"]: s["reason"] for s in report["skipped"]}
    assert set(reasons) == set(BAD)
    for utt, (_, fragment) in BAD.items():
        assert fragment in reasons[utt], (utt, reasons[utt])
    store = FeatureStore(out)
    assert store.utterances == _good_utts()
    for utt in store.utterances:
        expected = extract_features(fsdd / (utt.split("-", 1)[1] + ".wav"), config)
        np.testing.assert_array_equal(store[utt], expected)
    assert set(store.skipped) == set(BAD)
    with pytest.raises(KeyError, match="skipped at extraction: audio file not found"):
        store["bad-missing"]


@pytest.mark.parametrize("jobs", [1, 2])
def test_api_skips_every_bad_file_and_writes_the_good_ones(mixed_dir, fsdd, tmp_path, jobs):
    config = FeatureConfig()
    report = extract_data_dir(mixed_dir, tmp_path / "feats", config, jobs=jobs, show_progress=False)
    assert report.n_extracted == len(GOOD_FILES) and report.n_reused == 0
    assert len(report.skipped) == len(BAD) and report.exit_status == EXIT_SKIPPED == 3
    assert not report.ok
    summary = report.summary()
    assert "skipped 8 utterance(s)" in summary and "bad-nospeech" in summary
    _check_mixed_result(tmp_path / "feats", fsdd, config)


def test_cli_reports_skipped_files_and_exits_3(mixed_dir, fsdd, tmp_path, capsys):
    from speakergmm.cli import main

    out = tmp_path / "feats"
    status = main(["features", str(mixed_dir), str(out), "--jobs", "2", "--no-progress"])
    assert status == 3
    err = capsys.readouterr().err
    assert "8 of 14 utterance(s) skipped" in err
    for utt in BAD:
        assert utt in err  # one line each
    assert "bad-tooshort" in err and "too short" in err
    _check_mixed_result(out, fsdd, FeatureConfig())


def test_cli_exit_0_when_all_fine_and_options_reach_the_config(fsdd, tmp_path, capsys):
    from speakergmm.cli import main

    make_data_dir(fsdd, tmp_path / "data", select=lambda f: f["index"] == "5" and f["digit"] in "01")
    out = tmp_path / "feats"
    status = main(["features", str(tmp_path / "data"), str(out), "--n-mfcc", "13", "--no-deltas",
                   "--cmvn", "sliding", "--no-cmvn-variance", "--no-vad", "--energy", "log_energy"])
    assert status == 0
    store = FeatureStore(out)
    assert len(store) == 12 and store.n_features == 13
    c = store.config
    assert (c.n_mfcc, c.delta_order, c.cmvn, c.cmvn_variance, c.vad, c.energy) == \
        (13, 0, "sliding", False, False, "log_energy")
    # --config then overrides
    saved = tmp_path / "cfg.json"
    c.save(saved)
    assert main(["features", str(tmp_path / "data"), str(tmp_path / "feats2"), "--config", str(saved),
                 "--deltas", "1"]) == 0
    assert FeatureStore(tmp_path / "feats2").config == c.replace(delta_order=1)


def test_cli_bad_arguments(fsdd, tmp_path, capsys):
    from speakergmm.cli import main

    make_data_dir(fsdd, tmp_path / "data", select=lambda f: f["index"] == "5" and f["digit"] == "0")
    data, out = str(tmp_path / "data"), str(tmp_path / "feats")
    assert main(["features", data, out, "--n-mfcc", "99"]) == 2
    assert "n_mfcc=99" in capsys.readouterr().err
    assert main(["features", data, out, "--config", str(tmp_path / "none.json")]) == 2
    assert "no such feature configuration file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["features", data, out, "--cmvn", "global"])
    assert info.value.code == 2
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "wav.scp").write_text("only-an-id\n")
    (tmp_path / "broken" / "utt2spk").write_text("only-an-id s\n")
    assert main(["features", str(tmp_path / "broken"), out]) == 1
    err = capsys.readouterr().err
    assert "wav.scp:1" in err and "invalid data directory" in err
    assert not (tmp_path / "feats").exists()  # nothing done for bad arguments
    (tmp_path / "afile").write_text("x")
    assert main(["features", data, str(tmp_path / "afile")]) == 1


def test_help_has_examples(capsys):
    from speakergmm.cli import main

    with pytest.raises(SystemExit):
        main(["features", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "speakergmm features data/train feats/train --jobs 2" in text
    assert "exit status" in text


# ---------------------------------------------------------------------- the cache
@pytest.fixture()
def small_dir(fsdd, tmp_path) -> Path:
    make_data_dir(fsdd, tmp_path / "data", select=lambda f: f["index"] in ("5", "6") and f["digit"] in "012")
    return tmp_path / "data"  # 36 utterances


def _mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "feats").iterdir()}


def test_rerun_reuses_the_cache_without_recomputing(small_dir, tmp_path, monkeypatch):
    out = tmp_path / "feats"
    first = extract_data_dir(small_dir, out)
    assert first.n_extracted == 36 and first.ok and first.exit_status == 0
    before = _mtimes(out)

    def must_not_run(task):  # any recomputation would call this
        raise AssertionError("recomputed")

    monkeypatch.setattr(store_module, "_extract_chunk", must_not_run)
    second = extract_data_dir(small_dir, out)
    assert second.n_reused == 36 and second.n_extracted == 0
    assert _mtimes(out) == before
    assert second.n_frames == first.n_frames


def test_changed_audio_is_recomputed_alone(small_dir, tmp_path):
    out = tmp_path / "feats"
    extract_data_dir(small_dir, out)
    before = _mtimes(out)
    target = "jackson-1_jackson_6"
    data_wav = dict(line.split(None, 1) for line in (small_dir / "wav.scp").read_text().splitlines())
    copy = tmp_path / "copy.wav"
    x, rate = sf.read(data_wav[target])
    sf.write(copy, x[: len(x) // 2], rate)  # the audio changes: half of it
    (small_dir / "wav.scp").write_text("".join(
        f"{u} {copy if u == target else p}\n" for u, p in data_wav.items()))
    report = extract_data_dir(small_dir, out)
    assert (report.n_extracted, report.n_reused) == (1, 35)
    after = _mtimes(out)
    assert len(set(after) - set(before)) == 1  # one new shard holds the recomputed utterance
    assert all(after[name] == before[name] for name in set(after) & set(before))  # others untouched
    assert FeatureStore(out).n_frames(target) < 30


def test_a_cache_of_another_configuration_is_never_overwritten(small_dir, tmp_path):
    from speakergmm.features import FeatureCacheMismatch, cache_beside

    out = tmp_path / "feats"
    extract_data_dir(small_dir, out)
    before = {u: FeatureStore(out)[u] for u in FeatureStore(out).utterances}
    with pytest.raises(FeatureCacheMismatch, match=r"n_mfcc 20 in the cache, 13 asked for") as info:
        extract_data_dir(small_dir, out, FeatureConfig(n_mfcc=13), force=True)
    assert info.value.differences == {"n_mfcc": (20, 13)}
    kept = FeatureStore(out)  # untouched
    assert kept.config == FeatureConfig() and all(np.array_equal(kept[u], before[u]) for u in before)
    beside = cache_beside(out, FeatureConfig(n_mfcc=13))
    assert beside != out and beside.parent == out.parent and cache_beside(out, FeatureConfig()) == out
    out = beside
    report = extract_data_dir(small_dir, out, FeatureConfig(n_mfcc=13))
    assert report.n_extracted == 36 and report.n_reused == 0
    store = FeatureStore(out)
    assert store.config.n_mfcc == 13 and store[store.utterances[0]].shape[1] == 39
    again = extract_data_dir(small_dir, out, FeatureConfig(n_mfcc=13))
    assert again.n_reused == 36
    forced = extract_data_dir(small_dir, out, FeatureConfig(n_mfcc=13), force=True)
    assert forced.n_extracted == 36


def test_interrupted_run_resumes(small_dir, tmp_path, monkeypatch):
    out = tmp_path / "feats"
    real = store_module._extract_chunk
    calls = []

    def interrupted(task):
        calls.append(len(task.shard))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(store_module, "_extract_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract_data_dir(small_dir, out, chunk_size=5)
    assert not (out / "index.json").exists()
    with pytest.raises(FeatureStoreError, match="incomplete"):
        FeatureStore(out)
    monkeypatch.setattr(store_module, "_extract_chunk", real)
    report = extract_data_dir(small_dir, out, chunk_size=5)
    assert (report.n_reused, report.n_extracted) == (10, 26)
    assert not (out / ".journal.jsonl").exists()
    assert len(FeatureStore(out)) == 36


def _fake_todo(sizes):
    # (utt, location, segment start, end, origin, stat, size), as _extract_data_dir plans them
    return [(f"u{i:05d}", f"/audio/{i}.wav", None, None, "",
             os.stat_result((0o100644, 0, 0, 1, 0, 0, size, 0, 0, 0)), size)
            for i, size in enumerate(sizes)]


def test_chunks_never_split_the_segments_of_a_recording():
    todo = [(f"u{i:03d}", f"/rec/{i // 7}.wav", 0.1 * i, 0.1 * i + 0.1, "segments:1", None, 100)
            for i in range(70)]
    for size in (None, 3, 10):
        chunks = store_module._plan_chunks(todo, 2, size)
        assert [item for chunk in chunks for item in chunk] == todo
        recordings = [{item[1] for item in chunk} for chunk in chunks]
        assert sum(len(r) for r in recordings) == 10  # each recording in exactly one chunk


@pytest.mark.parametrize("jobs", [1, 2, 4])
def test_chunks_cover_everything_in_order_within_bounds(jobs):
    rng = np.random.default_rng(jobs)
    todo = _fake_todo(rng.integers(2_000, 40_000, size=3000))
    chunks = store_module._plan_chunks(todo, jobs, None)
    assert [item for chunk in chunks for item in chunk] == todo  # consecutive, nothing lost
    lengths = [len(c) for c in chunks]
    assert max(lengths) <= store_module._CHUNK_MAX_FILES
    assert min(lengths[:-1]) >= store_module._CHUNK_MIN_FILES
    # Guided scheduling: full chunks first, shrinking at the end so processes finish together,
    # and far fewer tasks than 32-file chunks gave.
    assert lengths[0] == store_module._CHUNK_MAX_FILES and lengths[-2] < lengths[0] / 4
    assert len(chunks) < 3000 / 32


def test_chunks_respect_the_audio_byte_bound():
    big = store_module._CHUNK_MAX_BYTES // 3 + 1  # three of these exceed the bound
    chunks = store_module._plan_chunks(_fake_todo([big] * 10 + [2 * store_module._CHUNK_MAX_BYTES]), 2, None)
    assert [len(c) for c in chunks][:4] == [2, 2, 2, 2]
    assert len(chunks[-1]) == 1  # a file above the bound still gets a chunk of its own
    assert [len(c) for c in store_module._plan_chunks(_fake_todo([100] * 10), 2, 4)] == [4, 4, 2]


def test_removed_utterances_leave_the_cache(small_dir, tmp_path):
    out = tmp_path / "feats"
    extract_data_dir(small_dir, out, chunk_size=6)
    assert len(list((out / "feats").iterdir())) == 6
    data = read_data_dir(small_dir)
    data.subset(utterances=data.utterances[:30]).write(small_dir)
    report = extract_data_dir(small_dir, out)
    assert report.n_reused == 30 and len(FeatureStore(out)) == 30
    assert len(list((out / "feats").iterdir())) == 5  # the shard nothing refers to is gone


# ---------------------------------------------------------------------- the reader
def test_feature_store_api(small_dir, tmp_path):
    out = tmp_path / "feats"
    report = extract_data_dir(small_dir, out)
    store = FeatureStore(out)
    assert len(store) == 36 and store.utterances == sorted(store.utterances)
    assert store.config == FeatureConfig() and store.n_features == 60
    utt = store.utterances[0]
    assert utt in store and "nope" not in store
    assert store[utt].dtype == np.float32 and store[utt].shape == (store.n_frames(utt), 60)
    assert store.total_frames == report.n_frames == sum(len(a) for a in store.values())
    assert [u for u, _ in store.items()] == store.utterances
    stream = store.arrays(store.utterances[:5])
    assert len(stream) == 5 and stream.n_frames == sum(store.n_frames(u) for u in store.utterances[:5])
    first, second = [a.sum() for a in stream], [a.sum() for a in stream]  # re-iterable
    assert first == second and len(first) == 5
    stacked = store.concatenate(store.utterances[:5])
    assert stacked.shape == (stream.n_frames, 60)
    np.testing.assert_array_equal(stacked[: store.n_frames(utt)], store[utt])
    with pytest.raises(KeyError, match="2 utterance"):
        store.arrays(["a", "b"])
    mapped = FeatureStore(out, mmap=True)[utt]
    np.testing.assert_array_equal(mapped, store[utt])
    assert "36 utterances" in repr(store)


def test_feature_store_refuses_damaged_caches(small_dir, tmp_path):
    with pytest.raises(FeatureStoreError, match="no such feature cache"):
        FeatureStore(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FeatureStoreError, match="not a feature cache"):
        FeatureStore(tmp_path / "empty")
    out = tmp_path / "feats"
    extract_data_dir(small_dir, out)
    store = FeatureStore(out)
    utt = store.utterances[-1]
    shard = out / "feats" / json.loads((out / "index.json").read_text())["utterances"][utt]["shard"]
    np.save(shard, np.zeros((3, 60), np.float32))
    with pytest.raises(FeatureStoreError, match="beyond the shard"):
        FeatureStore(out)[utt]
    np.save(shard, np.zeros((300, 13), np.float32))
    with pytest.raises(FeatureStoreError, match="expected float32"):
        FeatureStore(out)[utt]
    shard.write_bytes(b"garbage")
    with pytest.raises(FeatureStoreError, match="missing or corrupt"):
        FeatureStore(out)[utt]
    FeatureConfig(n_mfcc=13).save(out / "config.json")
    with pytest.raises(FeatureStoreError, match="disagree"):
        FeatureStore(out)


def test_utterance_ids_need_not_be_file_names(fsdd, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text(f"spk/odd:id {fsdd / '0_george_5.wav'}\n")
    (data / "utt2spk").write_text("spk/odd:id spk\n")
    extract_data_dir(data, tmp_path / "feats")
    assert FeatureStore(tmp_path / "feats")["spk/odd:id"].shape[1] == 60


def test_malformed_data_dir_is_refused_by_the_api(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text("a /x.wav\na /y.wav\n")
    (data / "utt2spk").write_text("a s\n")
    with pytest.raises(CorpusError, match=r"wav.scp:2: duplicate utterance"):
        extract_data_dir(data, tmp_path / "feats")


# ---------------------------------------------------------------------- all of FSDD
def test_all_of_fsdd_with_two_jobs(fsdd, tmp_path):
    """All 3000 recordings: 1.5 s with two jobs on the idle 2-core machine (10 s while two
    other test runs kept both cores busy)."""
    make_data_dir(fsdd, tmp_path / "data")
    report = extract_data_dir(tmp_path / "data", tmp_path / "feats", jobs=2, show_progress=False)
    assert report.ok and report.n_ok == 3000
    assert report.audio_seconds == pytest.approx(1312.3, abs=0.5)
    store = FeatureStore(tmp_path / "feats")
    n_frames = 0
    for utt, feats in store.items():
        assert feats.shape == (store.n_frames(utt), 60) and feats.shape[0] > 5
        assert np.all(np.isfinite(feats))
        n_frames += len(feats)
    assert n_frames == report.n_frames == store.total_frames
    assert os.path.getsize(tmp_path / "feats" / "index.json") > 0
