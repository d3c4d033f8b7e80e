"""FeatureConfig: defaults, validation, (de)serialisation, hashing and compatibility checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from speakergmm.features import FeatureConfig, FeatureConfigError, FeatureConfigMismatch


def test_defaults_are_kaldi_like_and_sized_for_the_rate():
    c = FeatureConfig()
    assert (c.sample_rate, c.preemphasis, c.frame_length_ms, c.frame_shift_ms) == (8000, 0.97, 25.0, 10.0)
    assert (c.n_mfcc, c.lifter, c.delta_order) == (20, 22.0, 2)
    assert c.frame_length_samples == 200 and c.frame_shift_samples == 80 and c.fft_size == 256
    assert c.mel_bands == 23 and c.upper_frequency == 4000.0
    assert c.n_features == 60
    wide = FeatureConfig(sample_rate=16000)
    assert wide.mel_bands == 40 and wide.fft_size == 512 and wide.frame_length_samples == 400
    assert FeatureConfig(delta_order=0, n_mfcc=13).n_features == 13
    assert FeatureConfig(delta_order=1, n_mfcc=13).n_features == 26
    assert FeatureConfig(fmax=-200).upper_frequency == 3800.0


def test_round_trips_through_dict_and_json(tmp_path):
    c = FeatureConfig(sample_rate=16000, n_mfcc=13, energy="log_energy", cmvn="sliding",
                      cmvn_variance=False, vad=False, dither=1.0, dither_seed=7, window="hamming")
    assert FeatureConfig.from_dict(c.to_dict()) == c
    path = tmp_path / "sub" / "features.json"
    c.save(path)
    saved = json.loads(path.read_text())
    assert saved["format"] == "speakergmm.FeatureConfig" and saved["hash"] == c.hash()
    assert saved["n_features"] == 39
    assert FeatureConfig.load(path) == c
    assert not list(path.parent.glob(".*tmp"))  # atomic write left nothing behind


def test_load_accepts_a_hand_written_dict_of_fields(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text('{"n_mfcc": 13, "cmvn": "none", "sample_rate": 16000}')
    c = FeatureConfig.load(path)
    assert (c.n_mfcc, c.cmvn, c.sample_rate, c.preemphasis) == (13, "none", 16000, 0.97)


@pytest.mark.parametrize("text, fragment", [
    ("not json", "not a readable JSON"),
    ('{"format": "speakergmm.GMM", "version": 1}', "expected a 'speakergmm.FeatureConfig'"),
    ('{"format": "speakergmm.FeatureConfig", "version": 99, "config": {}}', "version 99"),
    ('{"n_mfc": 13}', "unknown feature configuration field(s): n_mfc"),
    ('{"n_mfcc": "many"}', "n_mfcc must be an integer"),
    ('[1, 2]', "must be a mapping"),
])
def test_load_refuses_bad_files_naming_the_file(tmp_path, text, fragment):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(FeatureConfigError) as info:
        FeatureConfig.load(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_load_missing_file():
    with pytest.raises(FeatureConfigError, match="no such feature configuration file"):
        FeatureConfig.load("/nonexistent/features.json")


@pytest.mark.parametrize("changes, fragment", [
    ({"sample_rate": 0}, "sample_rate"),
    ({"preemphasis": 1.5}, "preemphasis"),
    ({"window": "kaiser"}, "window must be one of"),
    ({"energy": "loud"}, "energy must be one of"),
    ({"cmvn": "global"}, "cmvn must be one of"),
    ({"n_mfcc": 24}, "n_mfcc=24 exceeds what 23 mel bands give"),
    ({"n_mfcc": 23, "energy": "none"}, "exceeds"),
    ({"fmax": 5000}, "fmax"),
    ({"fmin": 4000}, "fmin"),
    ({"n_fft": 128}, "n_fft=128 is smaller than the frame length"),
    ({"delta_order": 5}, "delta_order"),
    ({"cmvn_window": 1}, "cmvn_window"),
    ({"vad_proportion": 2.0}, "vad_proportion"),
    ({"vad": "yes"}, "vad must be true or false"),
    ({"lifter": float("nan")}, "lifter must be a finite number"),
    ({"n_mfcc": 2.5}, "n_mfcc must be an integer"),
])
def test_invalid_values_are_refused_naming_the_field(changes, fragment):
    with pytest.raises(FeatureConfigError) as info:
        FeatureConfig(**changes)
    assert fragment in str(info.value)


def test_numbers_are_coerced_to_the_field_type():
    c = FeatureConfig(sample_rate=np.int64(16000), preemphasis=1 - 0.03, n_mfcc=13.0, lifter=22)
    assert type(c.sample_rate) is int and type(c.n_mfcc) is int and type(c.lifter) is float


def test_hash_is_stable_and_tracks_what_changes_features():
    c = FeatureConfig()
    assert c.hash() == FeatureConfig().hash() == FeatureConfig.from_dict(c.to_dict()).hash()
    assert len(c.hash()) == 16
    # automatic values resolve to the same configuration
    assert FeatureConfig(n_mels=23, n_fft=256, fmax=4000.0).hash() == c.hash()
    # the seed does nothing without dither
    assert FeatureConfig(dither_seed=5).hash() == c.hash()
    assert FeatureConfig(dither=1.0, dither_seed=5).hash() != FeatureConfig(dither=1.0, dither_seed=6).hash()
    hashes = {FeatureConfig(**kw).hash() for kw in
              [{}, {"n_mfcc": 13}, {"cmvn": "none"}, {"vad": False}, {"window": "hamming"},
               {"preemphasis": 0.95}, {"sample_rate": 16000}]}
    assert len(hashes) == 7


def test_check_compatible_names_the_differing_fields():
    model = FeatureConfig()
    model.check_compatible(FeatureConfig(n_mels=23))  # same features: no error
    with pytest.raises(FeatureConfigMismatch) as info:
        model.check_compatible(FeatureConfig(n_mfcc=13, cmvn="sliding"), what="speaker model alice.npz",
                               expected="model", given="test features")
    message = str(info.value)
    assert "speaker model alice.npz" in message
    assert "n_mfcc: 20 (model) vs 13 (test features)" in message
    assert "cmvn: 'utterance' (model) vs 'sliding' (test features)" in message
    assert set(info.value.differences) == {"n_mfcc", "cmvn"}
    assert isinstance(info.value, ValueError)
    with pytest.raises(TypeError):
        model.check_compatible({"n_mfcc": 20})


def test_replace_validates():
    c = FeatureConfig().replace(n_mfcc=13)
    assert c.n_mfcc == 13
    with pytest.raises(FeatureConfigError, match="unknown"):
        FeatureConfig().replace(n_cepstra=13)
    with pytest.raises(FeatureConfigError, match="n_mfcc"):
        FeatureConfig().replace(n_mfcc=0)


def test_the_documented_defaults_are_the_dataclass_defaults():
    """docs/features.md lists the defaults; FeatureConfig is where they live."""
    import dataclasses
    import re
    from pathlib import Path

    doc = Path(__file__).resolve().parents[1] / "docs" / "features.md"
    if not doc.is_file():
        pytest.skip("docs/features.md not present")
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", doc.read_text(), flags=re.M))
    fields = {f.name: f.default for f in dataclasses.fields(FeatureConfig)}
    assert set(rows) == set(fields)
    for name, default in fields.items():
        assert rows[name] == repr(default), name
