"""Figures: DET curves, score histograms, mixtures in 2-D and confusion matrices.

matplotlib is optional (``pip install speakergmm[plot]``) and imported only when a plot is
drawn. Figures are built with the object-oriented API on matplotlib's Agg canvas, so they
work without a display and never change the pyplot backend of the calling program. Every
figure is written atomically (:func:`speakergmm.io.atomic_path`); the format follows the
file suffix: ``.png``, ``.pdf`` or ``.svg``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from speakergmm import metrics
from speakergmm.io import atomic_path

__all__ = [
    "DET_TICKS",
    "plot_det",
    "plot_score_histograms",
    "plot_mixture_2d",
    "plot_confusion_matrix",
    "new_figure",
    "save_figure",
]

#: Tick positions (probabilities) of DET plot axes.
DET_TICKS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4)

_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}
_DCF_MARKERS = ("s", "D", "^", "v", "P", "X")


def new_figure(figsize: tuple[float, float]):
    """A Figure on the Agg canvas, or an ImportError saying how to get matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "speakergmm plots need matplotlib, which is not installed: "
            "pip install speakergmm[plot]"
        ) from exc
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: str | os.PathLike, dpi: int) -> Path:
    """Write ``fig`` to ``path`` (``.png``, ``.pdf`` or ``.svg``, by its suffix) atomically."""
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"{path}: unsupported figure format {path.suffix!r}; use one of "
            f"{', '.join(_FORMATS)}"
        )
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi)
    return path


def _probit(p: np.ndarray) -> np.ndarray:
    from scipy.stats import norm

    # 0 and 1 map to +-inf; clip far outside any sensible axis instead.
    return norm.ppf(np.clip(p, 1e-9, 1.0 - 1e-9))


def _thin(x: np.ndarray, y: np.ndarray, resolution: float) -> tuple[np.ndarray, np.ndarray]:
    """Drop consecutive points that fall in the same ``resolution`` cell (big score sets)."""
    if x.size <= 2000:
        return x, y
    cells = np.stack([np.round(x / resolution), np.round(y / resolution)], axis=1)
    keep = np.ones(x.size, dtype=bool)
    keep[1:-1] = np.any(cells[1:-1] != cells[:-2], axis=1)
    return x[keep], y[keep]


def _percent(p: float) -> str:
    text = f"{100 * p:.1f}" if p >= 0.01 else f"{100 * p:.2g}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _as_curves(curves) -> dict[str, tuple[ArrayLike, ArrayLike]]:
    if isinstance(curves, Mapping):
        if not curves:
            raise ValueError("curves is empty: give at least one (target, nontarget) pair")
        return dict(curves)
    if isinstance(curves, (tuple, list)) and len(curves) == 2:
        return {"system": (curves[0], curves[1])}
    raise ValueError(
        "curves must be a (target_scores, nontarget_scores) pair or a mapping "
        "label -> (target_scores, nontarget_scores)"
    )


def plot_det(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]] | tuple[ArrayLike, ArrayLike],
    path: str | os.PathLike,
    *,
    operating_points: Sequence[str] | Mapping[str, metrics.DCFOperatingPoint] = ("sre08", "sre10"),
    limits: tuple[float, float] = (0.0005, 0.5),
    title: str | None = "DET curve",
    figsize: tuple[float, float] = (6.0, 6.0),
    dpi: int = 150,
) -> Path:
    """Detection error trade-off curves on normal-deviate axes.

    Each curve gets its EER point (on the diagonal; ROCCH EER, see
    :func:`speakergmm.metrics.eer`) and its minimum-DCF operating point for each operating
    point, all listed in the legend.

    Parameters
    ----------
    curves : (target_scores, nontarget_scores) or mapping of label to such pairs
    path : path-like
        Output file; ``.png``, ``.pdf`` or ``.svg``.
    operating_points : names in :data:`speakergmm.metrics.OPERATING_POINTS` or a mapping
        name -> DCFOperatingPoint; empty for no minDCF markers.
    limits : (float, float)
        Axis range as probabilities (both axes).
    title : str, optional
    figsize, dpi
        Figure size (inches) and resolution of raster output.

    Returns
    -------
    Path
        ``path``.
    """
    curves = _as_curves(curves)
    if isinstance(operating_points, Mapping):
        points = dict(operating_points)
    else:
        points = {name: metrics.OPERATING_POINTS[name] if name in metrics.OPERATING_POINTS
                  else _unknown_point(name) for name in operating_points}
    low, high = limits
    if not 0.0 < low < high < 1.0:
        raise ValueError(f"limits must satisfy 0 < low < high < 1, got {limits}")

    fig = new_figure(figsize)
    ax = fig.add_subplot()
    lo, hi = _probit(np.array([low, high]))
    ax.plot([lo, hi], [lo, hi], color="0.75", linestyle=":", linewidth=1.0, zorder=1)
    for index, (label, (tar, non)) in enumerate(curves.items()):
        p_miss, p_fa, thresholds = metrics.det_curve(tar, non)
        x, y = _thin(_probit(p_fa), _probit(p_miss), (hi - lo) / 2000.0)
        color = f"C{index % 10}"
        eer = metrics.eer(tar, non)
        ax.plot(x, y, color=color, linewidth=1.6, zorder=2,
                label=f"{label} (EER {100 * eer:.2f}%)")
        ax.plot(*_probit(np.array([eer, eer])), marker="o", color=color, markersize=7,
                markerfacecolor="white", markeredgewidth=1.6, linestyle="none", zorder=3,
                label=f"{label}: EER point")
        for k, (name, op) in enumerate(points.items()):
            value, threshold = metrics.min_dcf(tar, non, operating_point=op)
            at = int(np.searchsorted(thresholds, threshold))
            ax.plot(*_probit(np.array([p_fa[at], p_miss[at]])), marker=_DCF_MARKERS[k % 6],
                    color=color, markersize=7, linestyle="none", zorder=3,
                    label=f"{label}: minDCF {name} = {value:.3f}")
    ticks = [t for t in DET_TICKS if low <= t <= high]
    tick_positions = _probit(np.array(ticks))
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_ticks(tick_positions, [_percent(t) for t in ticks])
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.grid(True, color="0.88", linewidth=0.8)
    ax.set_xlabel("False alarm probability (%)")
    ax.set_ylabel("Miss probability (%)")
    if title:
        ax.set_title(title)
    ax.legend(loc="lower left", fontsize="small", framealpha=0.9)
    return save_figure(fig, path, dpi)


def _unknown_point(name: str):
    raise ValueError(
        f"unknown operating point {name!r}; known: {', '.join(metrics.OPERATING_POINTS)}"
    )


def plot_score_histograms(
    target_scores: ArrayLike,
    nontarget_scores: ArrayLike,
    path: str | os.PathLike,
    *,
    bins: int | str = "auto",
    threshold: float | None = None,
    title: str | None = "Score distributions",
    figsize: tuple[float, float] = (7.0, 4.0),
    dpi: int = 150,
) -> Path:
    """Normalised histograms of target and non-target scores with a threshold line.

    ``threshold`` defaults to the EER threshold (:func:`speakergmm.metrics.eer_with_threshold`).
    """
    eer, eer_threshold = metrics.eer_with_threshold(target_scores, nontarget_scores)
    tar = np.asarray(target_scores, dtype=np.float64)
    non = np.asarray(nontarget_scores, dtype=np.float64)
    edges = np.histogram_bin_edges(np.concatenate([tar, non]), bins=bins)
    fig = new_figure(figsize)
    ax = fig.add_subplot()
    ax.hist(non, bins=edges, density=True, alpha=0.55, color="C3",
            label=f"non-target (n={non.size})")
    ax.hist(tar, bins=edges, density=True, alpha=0.55, color="C0",
            label=f"target (n={tar.size})")
    if threshold is None:
        threshold, what = eer_threshold, f"EER threshold (EER {100 * eer:.2f}%)"
    else:
        what = "threshold"
    if np.isfinite(threshold):
        ax.axvline(threshold, color="k", linestyle="--", linewidth=1.2,
                   label=f"{what} = {threshold:.3g}")
    ax.set_xlabel("score")
    ax.set_ylabel("density")
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    return save_figure(fig, path, dpi)


def _covariances_2d(covariances: ArrayLike, covariance_type: str, n_components: int,
                    n_features: int, dims: tuple[int, int]) -> np.ndarray:
    """The (K, 2, 2) covariances of the components projected on ``dims``."""
    cov = np.asarray(covariances, dtype=np.float64)
    i, j = dims
    expected = {"full": (n_components, n_features, n_features),
                "tied": (n_features, n_features),
                "diag": (n_components, n_features),
                "spherical": (n_components,)}
    if covariance_type not in expected:
        raise ValueError(f"covariance_type must be one of {', '.join(expected)}, "
                         f"got {covariance_type!r}")
    if cov.shape != expected[covariance_type]:
        raise ValueError(f"covariances for covariance_type={covariance_type!r} must have "
                         f"shape {expected[covariance_type]}, got {cov.shape}")
    if covariance_type == "full":
        return cov[:, [i, j]][:, :, [i, j]]
    if covariance_type == "tied":
        return np.broadcast_to(cov[[i, j]][:, [i, j]], (n_components, 2, 2))
    if covariance_type == "diag":
        out = np.zeros((n_components, 2, 2))
        out[:, 0, 0], out[:, 1, 1] = cov[:, i], cov[:, j]
        return out
    return cov[:, None, None] * np.eye(2)


def plot_mixture_2d(
    means: ArrayLike,
    covariances: ArrayLike,
    covariance_type: str,
    weights: ArrayLike,
    path: str | os.PathLike,
    *,
    X: ArrayLike | None = None,
    labels: ArrayLike | None = None,
    dims: tuple[int, int] = (0, 1),
    n_std: Sequence[float] = (1.0, 2.0),
    title: str | None = "Gaussian mixture",
    figsize: tuple[float, float] = (6.0, 5.0),
    dpi: int = 150,
) -> Path:
    """Data scatter with each component's covariance ellipses, on two feature dimensions.

    Parameters
    ----------
    means : array_like, shape (n_components, n_features)
    covariances : array_like
        In the layout of ``covariance_type`` (as scikit-learn / :class:`speakergmm.mixture.GMM`):
        full (K, D, D), tied (D, D), diag (K, D), spherical (K,).
    covariance_type : {"full", "tied", "diag", "spherical"}
    weights : array_like, shape (n_components,)
        Shown as ellipse opacity and in the legend.
    path : path-like
    X : array_like, shape (n_samples, n_features), optional
        Data to scatter.
    labels : array_like of int, shape (n_samples,), optional
        Colour the data by these (e.g. ``predict(X)``).
    dims : (int, int)
        Which two features to show.
    n_std : sequence of float
        Draw an ellipse at each of these Mahalanobis radii.
    """
    fig = new_figure(figsize)  # first: a clear ImportError when matplotlib is missing
    from matplotlib.patches import Ellipse
    means = np.asarray(means, dtype=np.float64)
    if means.ndim != 2 or means.shape[1] < 2:
        raise ValueError(f"means must have shape (n_components, n_features >= 2), "
                         f"got {means.shape}")
    n_components, n_features = means.shape
    if not (0 <= dims[0] < n_features and 0 <= dims[1] < n_features and dims[0] != dims[1]):
        raise ValueError(f"dims must be two different feature indices < {n_features}, got {dims}")
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (n_components,):
        raise ValueError(f"weights must have shape ({n_components},), got {weights.shape}")
    cov2 = _covariances_2d(covariances, covariance_type, n_components, n_features, tuple(dims))

    ax = fig.add_subplot()
    if X is not None:
        data = np.asarray(X, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != n_features:
            raise ValueError(f"X must have shape (n_samples, {n_features}), got {data.shape}")
        colors = None if labels is None else np.asarray(labels)
        ax.scatter(data[:, dims[0]], data[:, dims[1]], s=6, c=colors,
                   cmap="tab10" if colors is not None else None,
                   color="0.5" if colors is None else None, alpha=0.5, linewidths=0)
    alpha = 0.35 + 0.6 * weights / max(weights.max(), 1e-12)
    for k in range(n_components):
        values, vectors = np.linalg.eigh(cov2[k])
        angle = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1]))
        color = f"C{k % 10}"
        for radius in n_std:
            ax.add_patch(Ellipse(
                means[k, list(dims)], 2 * radius * np.sqrt(max(values[-1], 0.0)),
                2 * radius * np.sqrt(max(values[0], 0.0)), angle=angle, fill=False,
                edgecolor=color, linewidth=1.5, alpha=float(alpha[k])))
        ax.plot(*means[k, list(dims)], marker="x", color=color, markersize=8,
                markeredgewidth=2, linestyle="none", label=f"component {k} (w={weights[k]:.2f})")
    ax.autoscale_view()
    ax.set_xlabel(f"feature {dims[0]}")
    ax.set_ylabel(f"feature {dims[1]}")
    if title:
        ax.set_title(title)
    if n_components <= 12:
        ax.legend(fontsize="small")
    return save_figure(fig, path, dpi)


def plot_confusion_matrix(
    matrix: ArrayLike,
    path: str | os.PathLike,
    *,
    labels: Sequence[str] | None = None,
    normalize: bool = False,
    title: str | None = "Confusion matrix",
    xlabel: str = "predicted",
    ylabel: str = "true",
    show_accuracy: bool = False,
    figsize: tuple[float, float] | None = None,
    dpi: int = 150,
) -> Path:
    """A confusion matrix (rows: true class, columns: predicted), e.g. from
    :func:`speakergmm.metrics.identification_confusion` or a word recogniser's results;
    ``normalize`` shows row fractions, ``show_accuracy`` adds "k/n correct" to the title."""
    counts = np.asarray(matrix, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.size == 0:
        raise ValueError(f"matrix must be a non-empty square 2-D array, got shape {counts.shape}")
    n = counts.shape[0]
    if labels is None:
        labels = [str(i) for i in range(n)]
    if len(labels) != n:
        raise ValueError(f"labels has {len(labels)} names for a {n}x{n} matrix")
    shown = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1e-12) if normalize else counts
    size = figsize or (2.0 + 0.45 * n, 1.5 + 0.45 * n)
    fig = new_figure(size)
    ax = fig.add_subplot()
    image = ax.imshow(shown, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, shrink=0.8)
    if n <= 30:
        top = shown.max() if shown.size else 1.0
        for (i, j), value in np.ndenumerate(shown):
            text = f"{value:.2f}" if normalize else f"{int(value)}"
            ax.text(j, i, text, ha="center", va="center", fontsize="x-small",
                    color="white" if value > 0.6 * top else "black")
    ax.set_xticks(range(n), labels, rotation=90 if n > 6 else 0)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if show_accuracy:
        correct, total = np.trace(counts), counts.sum()
        summary = f"{int(correct)}/{int(total)} correct ({100.0 * correct / max(total, 1):.1f}%)"
        title = f"{title}\n{summary}" if title else summary
    if title:
        ax.set_title(title)
    return save_figure(fig, path, dpi)
