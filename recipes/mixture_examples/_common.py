"""What the mixture examples share: arguments, optional dependencies, figures, results."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

from speakergmm.io import atomic_path, atomic_write_json  # noqa: E402


def parse_args(doc: str, argv: list[str] | None = None, **extra: dict[str, Any]) -> argparse.Namespace:
    """``--out DIR`` (required) and ``--seed``, plus ``extra`` options (name -> add_argument kwargs)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    for name, kwargs in extra.items():
        parser.add_argument(name, **kwargs)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def require(*modules: str) -> None:
    """Exit with a clear message when an optional dependency is missing."""
    missing = []
    for name in modules:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        extras = {"matplotlib": "plot", "sklearn": "test"}
        hint = " ".join(sorted({f"speakergmm[{extras.get(m, 'test')}]" for m in missing}))
        raise SystemExit(f"this example needs {', '.join(missing)}, which is not installed: "
                         f"pip install {hint}")


def figure(figsize: tuple[float, float]) -> Any:
    """A matplotlib Figure on the Agg canvas (no display needed; pyplot left alone)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: Path, dpi: int = 120) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


def write_results(path: Path, results: dict[str, Any]) -> Path:
    atomic_write_json(path, results)
    return path


def covariances_2d(estimator: Any) -> np.ndarray:
    """The (K, 2, 2) covariance of each component of a fitted 2-D mixture, whatever its type."""
    cov = np.asarray(estimator.covariances_, dtype=np.float64)
    K = estimator.means_.shape[0]
    kind = estimator.covariance_type
    if kind == "full":
        return cov
    if kind == "tied":
        return np.broadcast_to(cov, (K, 2, 2))
    if kind == "diag":
        return cov[:, :, None] * np.eye(2)
    return cov[:, None, None] * np.eye(2)  # spherical


def draw_ellipses(ax: Any, estimator: Any, n_std: tuple[float, ...] = (1.0, 2.0),
                  components: Any = None, colors: Any = None) -> None:
    """Covariance ellipses (at ``n_std`` Mahalanobis radii) and means of a 2-D mixture."""
    from matplotlib.patches import Ellipse

    covariances = covariances_2d(estimator)
    means = np.asarray(estimator.means_)
    indices = range(means.shape[0]) if components is None else components
    for j, k in enumerate(indices):
        values, vectors = np.linalg.eigh(covariances[k])
        angle = np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1]))
        color = colors[j] if colors is not None else f"C{k % 10}"
        for radius in n_std:
            ax.add_patch(Ellipse(means[k], 2 * radius * np.sqrt(values[-1]),
                                 2 * radius * np.sqrt(values[0]), angle=angle, fill=False,
                                 edgecolor=color, linewidth=1.5))
        ax.plot(*means[k], marker="x", color=color, markersize=8, markeredgewidth=2)
