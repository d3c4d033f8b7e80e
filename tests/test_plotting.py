"""Plots are written (atomically) as valid image files; errors are clear."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from speakergmm import plotting  # noqa: E402
from speakergmm.metrics import identification_confusion  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def scores(seed=0, n_tar=300, n_non=3000, shift=2.0):
    rng = np.random.default_rng(seed)
    return rng.normal(shift, 1, n_tar), rng.normal(0, 1, n_non)


def assert_png(path, min_size=(200, 200)):
    from matplotlib.image import imread

    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    image = imread(path)
    assert image.shape[0] >= min_size[0] and image.shape[1] >= min_size[1]
    # Something was drawn: not a blank canvas.
    assert image[..., :3].std() > 0.05
    return image


def no_temp_files(directory):
    return not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_plot_det_png_pdf_svg(tmp_path):
    curves = {"GMM-UBM": scores(0), "GMM-UBM + Z-norm": scores(1, shift=3.0)}
    out = plotting.plot_det(curves, tmp_path / "det.png")
    assert out == tmp_path / "det.png"
    image = assert_png(out)
    assert image.shape[:2] == (900, 900)  # 6 x 6 inches at 150 dpi
    assert (plotting.plot_det(curves, tmp_path / "det.pdf").read_bytes()[:5]) == b"%PDF-"
    svg = plotting.plot_det(scores(2), tmp_path / "det.svg").read_text()
    assert "<svg" in svg and "EER" in svg and "minDCF sre08" in svg
    assert no_temp_files(tmp_path)


def test_plot_det_legend_lists_eer_and_min_dcf(tmp_path):
    from speakergmm.metrics import eer, min_dcf

    tar, non = scores(3)
    svg = plotting.plot_det({"sys": (tar, non)}, tmp_path / "det.svg",
                            operating_points=("sre10",)).read_text()
    assert f"sys (EER {100 * eer(tar, non):.2f}%)" in svg
    assert f"sys: minDCF sre10 = {min_dcf(tar, non, operating_point='sre10')[0]:.3f}" in svg
    assert "minDCF sre08" not in svg


def test_plot_det_large_input_and_ties(tmp_path):
    rng = np.random.default_rng(0)
    tar = np.round(rng.normal(2, 1, 50_000), 2)
    non = np.round(rng.normal(0, 1, 200_000), 2)
    assert_png(plotting.plot_det((tar, non), tmp_path / "big.png"))


def test_thin_keeps_endpoints_and_shape():
    x = np.linspace(-3, 3, 100_000)
    y = -x
    tx, ty = plotting._thin(x, y, 6 / 2000)
    assert tx.size < 5000
    assert (tx[0], tx[-1], ty[0], ty[-1]) == (x[0], x[-1], y[0], y[-1])


def test_plot_det_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unsupported figure format"):
        plotting.plot_det(scores(0), tmp_path / "det.jpg")
    with pytest.raises(ValueError, match="limits"):
        plotting.plot_det(scores(0), tmp_path / "det.png", limits=(0.5, 0.1))
    with pytest.raises(ValueError, match="sre99"):
        plotting.plot_det(scores(0), tmp_path / "det.png", operating_points=("sre99",))
    with pytest.raises(ValueError, match="nontarget_scores.*empty"):
        plotting.plot_det({"x": ([1.0], [])}, tmp_path / "det.png")
    assert list(tmp_path.iterdir()) == []


def test_existing_figure_is_replaced_atomically(tmp_path):
    target = tmp_path / "hist.png"
    target.write_bytes(b"old")
    plotting.plot_score_histograms(*scores(0), target)
    assert_png(target)
    assert no_temp_files(tmp_path)


def test_plot_score_histograms(tmp_path):
    svg = plotting.plot_score_histograms(*scores(4), tmp_path / "h.svg").read_text()
    assert "EER threshold" in svg and "non-target (n=3000)" in svg
    svg = plotting.plot_score_histograms(*scores(4), tmp_path / "h2.svg", threshold=0.5).read_text()
    assert "threshold = 0.5" in svg
    assert_png(plotting.plot_score_histograms(*scores(4), tmp_path / "h.png", bins=40))


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_plot_mixture_2d_every_covariance_type(tmp_path, covariance_type):
    rng = np.random.default_rng(0)
    means = np.array([[0.0, 0.0, 1.0], [4.0, 2.0, -1.0], [0.0, 5.0, 0.0]])
    covariances = {
        "full": np.stack([np.eye(3), [[1, 0.8, 0], [0.8, 1, 0], [0, 0, 1]], 0.3 * np.eye(3)]),
        "tied": np.array([[1.0, 0.3, 0.0], [0.3, 0.5, 0.0], [0.0, 0.0, 2.0]]),
        "diag": np.array([[1.0, 0.2, 1.0], [0.3, 2.0, 1.0], [1.0, 1.0, 1.0]]),
        "spherical": np.array([1.0, 0.5, 2.0]),
    }[covariance_type]
    X = np.concatenate([rng.normal(m, 0.7, (200, 3)) for m in means])
    labels = np.repeat(np.arange(3), 200)
    out = plotting.plot_mixture_2d(means, covariances, covariance_type, [0.2, 0.3, 0.5],
                                   tmp_path / f"{covariance_type}.png", X=X, labels=labels,
                                   dims=(0, 1))
    assert_png(out)


def test_plot_mixture_2d_validates(tmp_path):
    means = np.zeros((2, 2))
    with pytest.raises(ValueError, match="covariances"):
        plotting.plot_mixture_2d(means, np.ones((3, 2)), "diag", [0.5, 0.5], tmp_path / "m.png")
    with pytest.raises(ValueError, match="covariance_type"):
        plotting.plot_mixture_2d(means, np.ones((2, 2)), "banded", [0.5, 0.5], tmp_path / "m.png")
    with pytest.raises(ValueError, match="dims"):
        plotting.plot_mixture_2d(means, np.ones((2, 2)), "diag", [0.5, 0.5], tmp_path / "m.png",
                                 dims=(0, 2))
    with pytest.raises(ValueError, match="X must"):
        plotting.plot_mixture_2d(means, np.ones((2, 2)), "diag", [0.5, 0.5], tmp_path / "m.png",
                                 X=np.zeros((5, 3)))


def test_plot_confusion_matrix(tmp_path):
    rng = np.random.default_rng(0)
    score_matrix = rng.normal(size=(40, 4)) + 2 * np.eye(4)[np.repeat(np.arange(4), 10)]
    matrix = identification_confusion(score_matrix, np.repeat(np.arange(4), 10))
    assert_png(plotting.plot_confusion_matrix(matrix, tmp_path / "cm.png",
                                              labels=["a", "b", "c", "d"], normalize=True))
    with pytest.raises(ValueError, match="labels"):
        plotting.plot_confusion_matrix(matrix, tmp_path / "cm.png", labels=["a"])


def test_plot_confusion_matrix_for_a_recogniser(tmp_path):
    matrix = np.array([[9, 1, 0], [0, 10, 0], [2, 0, 8]])
    svg = plotting.plot_confusion_matrix(matrix, tmp_path / "words.svg", labels=["one", "two", "six"],
                                         xlabel="recognised", ylabel="spoken", show_accuracy=True,
                                         title="digits").read_text()
    for text in ("recognised", "spoken", "digits", "27/30 correct (90.0%)", "six"):
        assert text in svg


def test_plot_alignment_over_the_spectrogram(tmp_path):
    from speakergmm.hmm.plots import plot_alignment, state_segments

    rate = 8000
    t = np.arange(rate // 2) / rate
    signal = np.sin(2 * np.pi * 440 * t) * (t < 0.25) + np.sin(2 * np.pi * 1200 * t) * (t >= 0.25)
    frame_times = 0.0125 + 0.01 * np.arange(48)
    path = np.repeat([0, 1, 2], 16)
    emissions = np.random.default_rng(0).normal(size=(48, 3))
    fig = plot_alignment(signal, rate, path, frame_times, tmp_path / "align.png",
                         title="a test", log_emissions=emissions)
    assert len(fig.axes) >= 2  # spectrogram and emission panels
    assert_png(tmp_path / "align.png")
    assert state_segments(path) == [(0, 0, 16), (1, 16, 32), (2, 32, 48)]
    with pytest.raises(ValueError):
        plot_alignment(signal, rate, path[:-1], frame_times)


def test_missing_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg",
                 "matplotlib.patches"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import name` fail
    with pytest.raises(ImportError, match=r"pip install speakergmm\[plot\]"):
        plotting.plot_det(scores(0), tmp_path / "det.png")
    with pytest.raises(ImportError, match=r"speakergmm\[plot\]"):
        plotting.plot_mixture_2d(np.zeros((1, 2)), np.ones((1, 2)), "diag", [1.0],
                                 tmp_path / "m.png")
    assert not (tmp_path / "det.png").exists()
