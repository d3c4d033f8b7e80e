"""Hostile or damaged model files: one ModelFileError naming the file and the field."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from speakergmm.cli import main
from speakergmm.io import ModelFileError, load_model_file, save_model_file
from speakergmm.mixture import GMM
from speakergmm.verification import SpeakerModels, load_ubm, save_ubm


def _gmm() -> GMM:
    return GMM(np.array([0.5, 0.5]), np.array([[0.0, 0.0], [3.0, 3.0]]), np.ones((2, 2)), "diag")


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _write_archive(path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _ubm_members(header: dict | str | None = None, **arrays) -> dict[str, bytes]:
    base = _gmm().to_arrays()
    base.update(arrays)
    if header is None:
        header = {"format": "speakergmm.GMM", "version": 1, "meta": {}}
    text = header if isinstance(header, str) else json.dumps(header)
    members = {f"{k}.npy": _npy(np.asarray(v)) for k, v in base.items() if v is not None}
    members["__meta__.npy"] = _npy(np.array(text))
    return members


@pytest.mark.parametrize("arrays, field", [
    ({"means": np.zeros((3, 2))}, "weights"),                                   # wrong shapes
    ({"covariances": np.ones((2, 5))}, "covariances"),
    ({"covariance_type": np.array("banana")}, "covariance_type"),               # bad type
    ({"covariance_type": np.array(["diag", "full"])}, "covariance_type"),
    ({"covariances": np.array([[1.0, -1.0], [1.0, 1.0]])}, "covariances"),      # negative variance
    ({"weights": np.array([0.7, 0.7])}, "weights"),
    ({"means": np.array([[np.nan, 0.0], [1.0, 1.0]])}, "means"),
    ({"means": np.array([["a", "b"], ["c", "d"]])}, "means"),
])
def test_malformed_mixture_arrays_name_the_file_and_field(tmp_path, arrays, field):
    path = tmp_path / "ubm.npz"
    _write_archive(path, _ubm_members(**arrays))
    with pytest.raises(ModelFileError, match=rf"ubm\.npz: .*field '{field}'"):
        GMM.load(path)


@pytest.mark.parametrize("header, field", [
    ({"format": "speakergmm.GMM", "version": "1; import os", "meta": {}}, "version"),
    ({"format": "speakergmm.GMM", "version": 1.5, "meta": {}}, "version"),
    ({"format": "speakergmm.GMM", "version": True, "meta": {}}, "version"),
    ({"format": ["speakergmm.GMM"], "version": 1, "meta": {}}, "format"),
    ({"format": "speakergmm.GMM", "version": 1, "meta": [1, 2]}, "meta"),
    ('{"format": "speakergmm.GMM", "version": 1, "meta": ' + "[" * 100000 + "]" * 100000 + "}",
     "__meta__"),
    ('{"format": "speakergmm.GMM", "version": 1, "meta": {"a": ' + "[" * 40 + "]" * 40 + "}}",
     "__meta__"),
])
def test_malformed_headers_name_the_file_and_field(tmp_path, header, field):
    path = tmp_path / "ubm.npz"
    _write_archive(path, _ubm_members(header))
    with pytest.raises(ModelFileError, match=rf"ubm\.npz: .*'{field}'"):
        GMM.load(path)


def _npy_with_header(shape_text: str, data: bytes, descr: str = "<f8") -> bytes:
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}"
    header = header.ljust(((len(header) + 11 + 63) // 64) * 64 - 11) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1") + data


def test_npy_header_claiming_huge_array_is_refused_before_allocation(tmp_path):
    members = _ubm_members()
    members["means.npy"] = _npy_with_header("(1000000, 1000000)", np.zeros(4).tobytes())
    path = tmp_path / "huge.npz"
    _write_archive(path, members)
    with pytest.raises(ModelFileError, match=r"huge\.npz: .*'means' claims shape \(1000000, 1000000\)"):
        GMM.load(path)


def test_non_array_member_and_object_dtype_are_refused(tmp_path):
    members = _ubm_members()
    members["notes.txt"] = b"hello"
    _write_archive(tmp_path / "a.npz", members)
    with pytest.raises(ModelFileError, match=r"a\.npz: entry 'notes\.txt' is not an array"):
        load_model_file(tmp_path / "a.npz", "speakergmm.GMM")
    members = _ubm_members()
    members["means.npy"] = _npy_with_header("(1, 2)", np.zeros(2).tobytes(), descr="|O")
    _write_archive(tmp_path / "b.npz", members)
    with pytest.raises(ModelFileError, match=r"b\.npz: .*'means'"):
        load_model_file(tmp_path / "b.npz", "speakergmm.GMM")


def test_speaker_model_fields_are_checked(tmp_path):
    good = SpeakerModels(["a", "b"], np.zeros((2, 2, 2)), None, None, "f" * 16, "diag")
    good.save(tmp_path / "good.npz")
    assert SpeakerModels.load(tmp_path / "good.npz").speaker_ids == ["a", "b"]
    arrays, meta, _ = load_model_file(tmp_path / "good.npz", "speakergmm.SpeakerModels")
    for name, change, field in [
        ("shape.npz", {"means": np.zeros((3, 2, 2))}, "means"),
        ("cov.npz", {"covariances": -np.ones((2, 2, 2))}, "covariances"),
        ("inf.npz", {"means": np.full((2, 2, 2), np.inf)}, "means"),
    ]:
        save_model_file(tmp_path / name, "speakergmm.SpeakerModels", 1, {**arrays, **change}, meta)
        with pytest.raises(ModelFileError, match=rf"{name}: .*'{field}'"):
            SpeakerModels.load(tmp_path / name)
    save_model_file(tmp_path / "fc.npz", "speakergmm.SpeakerModels", 1, arrays,
                    {**meta, "feature_config": {"n_mfcc": "many"}})
    with pytest.raises(ModelFileError, match=r"fc\.npz: .*'feature_config'"):
        SpeakerModels.load(tmp_path / "fc.npz")
    save_model_file(tmp_path / "fp.npz", "speakergmm.SpeakerModels", 1, arrays,
                    {**meta, "ubm_fingerprint": {"x": 1}})
    with pytest.raises(ModelFileError, match=r"fp\.npz: .*'ubm_fingerprint'"):
        SpeakerModels.load(tmp_path / "fp.npz")


def test_cli_prints_one_line_for_a_hostile_model_file(tmp_path, capsys):
    path = tmp_path / "ubm.npz"
    _write_archive(path, _ubm_members({"format": "speakergmm.GMM", "version": "1; import os", "meta": {}}))
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text("u1 /nonexistent.wav\n")
    (data / "utt2spk").write_text("u1 s1\n")
    status = main(["enroll", "--data", str(data), "--ubm", str(path), "--out", str(tmp_path / "s.npz"),
                   "-j", "1"])
    err = capsys.readouterr().err
    assert status == 1
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "ubm.npz" in err and "'version'" in err


def test_valid_ubm_still_round_trips(tmp_path):
    save_ubm(tmp_path / "u.npz", _gmm())
    gmm, _ = load_ubm(tmp_path / "u.npz")
    assert gmm.fingerprint() == _gmm().fingerprint()


@pytest.mark.parametrize("feature_config", [[1, 2], {"sample_rate": "fast"}, {"n_mfcc": -3}])
def test_a_ubm_with_a_bad_feature_configuration_is_one_line(tmp_path, capsys, feature_config):
    save_ubm(tmp_path / "u.npz", _gmm(), feature_config=None)
    arrays, meta, _ = load_model_file(tmp_path / "u.npz", "speakergmm.GMM")
    save_model_file(tmp_path / "bad.npz", "speakergmm.GMM", 1, arrays, {**meta, "feature_config": feature_config})
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text("u1 /nonexistent.wav\n")
    (data / "utt2spk").write_text("u1 s1\n")
    status = main(["enroll", "--data", str(data), "--ubm", str(tmp_path / "bad.npz"),
                   "--out", str(tmp_path / "s.npz"), "-j", "1"])
    err = capsys.readouterr().err
    assert status == 1 and len(err.strip().splitlines()) == 1
    assert "bad.npz" in err and "'feature_config'" in err


def test_an_unexpected_error_is_one_line_unless_the_traceback_is_asked_for(tmp_path, capsys, monkeypatch):
    from speakergmm.verification import pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(pipeline, "read_scores", broken)
    status = main(["evaluate", "--scores", str(tmp_path / "s.txt"), "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert status == 1 and err.strip().splitlines() == [
        "speakergmm evaluate: unexpected RuntimeError: boom (set SPEAKERGMM_TRACEBACK=1 to see where; "
        "please report it)"]
    monkeypatch.setenv("SPEAKERGMM_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(["evaluate", "--scores", str(tmp_path / "s.txt"), "--out", str(tmp_path / "e")])
