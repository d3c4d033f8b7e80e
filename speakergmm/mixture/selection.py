"""Model selection for Gaussian mixtures: sweep sizes and covariance types, score, pick.

:func:`select_mixture` fits :class:`~speakergmm.mixture.GaussianMixture` for every
combination of ``n_components`` and ``covariance_type`` and scores each fit by

- ``"bic"``: the Bayesian information criterion on the training data (lower is better;
  consistent: with enough data it picks the true number of components when the model
  family is right);
- ``"aic"``: the Akaike information criterion (lower is better; penalises parameters less,
  so it tends to choose larger models, which can suit density estimation);
- ``"heldout"``: the mean log-likelihood of data not used for fitting (higher is better;
  no assumption about the parameter count, but noisier on small sets).

It returns a :class:`SelectionResult`: a tidy table (one row per fit), the best
parameters and the best estimator, and a plot of the criterion curves.

Example
-------
>>> result = select_mixture(X, n_components=range(1, 9), criterion="bic", random_state=0)
>>> print(result)                       # the table, best row marked
>>> result.best_params_                 # {'n_components': 3, 'covariance_type': 'full'}
>>> result.best_estimator_.predict(X)
>>> result.to_csv("sweep.csv"); result.plot(path="sweep.png")
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from speakergmm.io import atomic_write_text
from speakergmm.mixture._base import ConvergenceWarning, validate_X
from speakergmm.mixture.init import check_random_state, draw_seed
from speakergmm.mixture._covariance import COVARIANCE_TYPES, n_parameters
from speakergmm.mixture.gaussian_mixture import GaussianMixture
from speakergmm.utils import effective_jobs, progress as progress_bar, renamed_argument, worker_pool

__all__ = ["CRITERIA", "SelectionResult", "select_mixture"]

#: Criteria :func:`select_mixture` understands, and whether lower values are better.
CRITERIA: dict[str, bool] = {"bic": True, "aic": True, "heldout": False}

#: Columns of :attr:`SelectionResult.table`, in order, with their numpy types.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("n_components", "i8"),
    ("covariance_type", "U9"),
    ("n_parameters", "i8"),
    ("bic", "f8"),
    ("aic", "f8"),
    ("train_log_likelihood", "f8"),
    ("heldout_log_likelihood", "f8"),
    ("converged", "?"),
    ("n_iter", "i8"),
    ("fit_seconds", "f8"),
    ("error", "U200"),
)

# Parameters the sweep sets itself, so estimator_params may not.
_SWEPT = ("n_components", "covariance_type", "random_state", "n_init")


class SelectionResult:
    """Outcome of :func:`select_mixture`.

    Attributes
    ----------
    rows : list of dict
        One dict per fit with the keys of :data:`COLUMNS`: ``n_components``,
        ``covariance_type``, ``n_parameters``, ``bic``, ``aic`` (on the training data),
        ``train_log_likelihood`` and ``heldout_log_likelihood`` (mean per sample; NaN when
        there is no held-out data), ``converged``, ``n_iter``, ``fit_seconds`` and ``error``
        (empty, or why the fit failed: its scores are then NaN and it is never chosen).
    criterion : str
        ``"bic"``, ``"aic"`` or ``"heldout"``.
    best_index_ : int
        Index into :attr:`rows` of the chosen fit.
    best_params_ : dict
        ``{"n_components": ..., "covariance_type": ...}`` of the chosen fit.
    best_estimator_ : GaussianMixture
        The chosen model (refitted on all of ``X`` when a validation split of ``X`` was
        held out and ``refit=True``; otherwise the fitted model from the sweep).
    n_train_, n_heldout_ : int
        Samples used for fitting and for the held-out score (0 when none).
    """

    def __init__(self, rows: list[dict[str, Any]], criterion: str, best_index: int,
                 best_estimator: GaussianMixture, n_train: int, n_heldout: int):
        self.rows = rows
        self.criterion = criterion
        self.best_index_ = best_index
        self.best_params_ = {"n_components": int(rows[best_index]["n_components"]),
                             "covariance_type": str(rows[best_index]["covariance_type"])}
        self.best_estimator_ = best_estimator
        self.n_train_ = n_train
        self.n_heldout_ = n_heldout

    # ------------------------------------------------------------------ table
    @property
    def table(self) -> np.ndarray:
        """The rows as a numpy structured array (fields as in :data:`COLUMNS`)."""
        dtype = np.dtype(list(COLUMNS))
        return np.array([tuple(row[name] for name, _ in COLUMNS) for row in self.rows], dtype=dtype)

    @property
    def best_score_(self) -> float:
        """The chosen fit's value of the criterion."""
        return float(self.rows[self.best_index_][_score_column(self.criterion)])

    def best_row(self, criterion: str | None = None) -> dict[str, Any]:
        """The row of the best fit by a criterion (default: the one used for selection), so
        that one sweep answers "what would AIC have chosen?" as well."""
        criterion = _check_criterion(criterion or self.criterion)
        return dict(self.rows[_best_index(self.rows, criterion)])

    def scores(self, criterion: str | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per covariance type, ``(n_components, values)`` of a criterion (default: the one
        used for selection), sorted by ``n_components``; failed fits are left out."""
        column = _score_column(_check_criterion(criterion or self.criterion))
        curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for cov_type in dict.fromkeys(row["covariance_type"] for row in self.rows):
            pairs = sorted((row["n_components"], row[column]) for row in self.rows
                           if row["covariance_type"] == cov_type and np.isfinite(row[column]))
            ks = np.array([k for k, _ in pairs], dtype=np.int64)
            curves[cov_type] = (ks, np.array([v for _, v in pairs], dtype=np.float64))
        return curves

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the table as CSV (header row, one line per fit), atomically."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([name for name, _ in COLUMNS])
        for row in self.rows:
            writer.writerow([_csv_value(row[name]) for name, _ in COLUMNS])
        atomic_write_text(path, buffer.getvalue())
        return Path(path)

    def __str__(self) -> str:
        heldout = any(np.isfinite(row["heldout_log_likelihood"]) for row in self.rows)
        headers = ["", "K", "covariance", "params", "BIC", "AIC", "train LL"]
        headers += ["heldout LL"] if heldout else []
        headers += ["iter", "seconds", "note"]
        lines = []
        for i, row in enumerate(self.rows):
            note = row["error"] or ("" if row["converged"] else "not converged")
            note = note if len(note) <= 72 else note[:71] + "…"
            cells = ["*" if i == self.best_index_ else "", str(row["n_components"]),
                     row["covariance_type"], str(row["n_parameters"]), _fmt(row["bic"]),
                     _fmt(row["aic"]), _fmt(row["train_log_likelihood"], 4)]
            cells += [_fmt(row["heldout_log_likelihood"], 4)] if heldout else []
            cells += [str(row["n_iter"]), f"{row['fit_seconds']:.2f}", note]
            lines.append(cells)
        widths = [max(len(h), *(len(c[j]) for c in lines)) for j, h in enumerate(headers)]
        left = {0, 2, len(headers) - 1}  # marker, covariance type and note; numbers go right
        out = [f"Mixture selection by {self.criterion} ({_direction(self.criterion)} is better), "
               f"{self.n_train_} training samples"
               + (f", {self.n_heldout_} held out" if self.n_heldout_ else "")]
        for cells in [headers] + lines:
            out.append("  ".join(c.ljust(w) if j in left else c.rjust(w)
                                 for j, (c, w) in enumerate(zip(cells, widths))).rstrip())
        out.append(f"best: {self.best_params_} ({self.criterion} = {_fmt(self.best_score_, 4)})")
        return "\n".join(out)

    def __repr__(self) -> str:
        return (f"SelectionResult(criterion={self.criterion!r}, n_fits={len(self.rows)}, "
                f"best_params_={self.best_params_})")

    # ------------------------------------------------------------------ plot
    def plot(self, ax: Any = None, criterion: str | None = None,
             path: str | os.PathLike | None = None, dpi: int = 150) -> Any:
        """Draw the criterion against ``n_components``, one curve per covariance type.

        The chosen fit is marked with a star. Needs matplotlib (``pip install
        speakergmm[plot]``).

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Draw into this; by default a new figure (on the Agg canvas, so no display is
            needed and pyplot's state is left alone).
        criterion : {"bic", "aic", "heldout"}, optional
            What to draw; default the criterion used for selection.
        path : path-like, optional
            Also save the figure there (``.png``, ``.pdf`` or ``.svg``), atomically.

        Returns
        -------
        The Axes drawn on.
        """
        from speakergmm.plotting import new_figure, save_figure

        criterion = _check_criterion(criterion or self.criterion)
        if ax is None:
            fig = new_figure((6.0, 4.0))
            ax = fig.add_subplot()
        else:
            fig = ax.figure
        for i, (cov_type, (ks, values)) in enumerate(self.scores(criterion).items()):
            ax.plot(ks, values, marker="o", markersize=4, color=f"C{i}", label=cov_type)
        best = self.rows[self.best_index_]
        value = best[_score_column(criterion)]
        if np.isfinite(value):
            ax.plot([best["n_components"]], [value], marker="*", markersize=16, color="k",
                    linestyle="none",
                    label=f"chosen by {self.criterion}: {best['covariance_type']}, "
                          f"K={best['n_components']}")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("number of components")
        ax.set_ylabel({"bic": "BIC (lower is better)", "aic": "AIC (lower is better)",
                       "heldout": "held-out mean log-likelihood (higher is better)"}[criterion])
        ax.legend(fontsize="small")
        if path is not None:
            save_figure(fig, path, dpi)
        return ax


def _score_column(criterion: str) -> str:
    return "heldout_log_likelihood" if criterion == "heldout" else criterion


def _direction(criterion: str) -> str:
    return "lower" if CRITERIA[criterion] else "higher"


def _check_criterion(criterion: Any) -> str:
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {', '.join(map(repr, CRITERIA))}; "
                         f"got {criterion!r}")
    return criterion


def _best_index(rows: list[dict[str, Any]], criterion: str) -> int:
    column = _score_column(criterion)
    candidates = [i for i, row in enumerate(rows) if np.isfinite(row[column])]
    if not candidates:
        raise ValueError(f"no fit has a finite {criterion} score")
    sign = 1.0 if CRITERIA[criterion] else -1.0
    # Ties (rare) go to the first row: the smaller model of the first covariance type.
    return min(candidates, key=lambda i: (sign * rows[i][column], i))


def _fmt(value: float, digits: int = 1) -> str:
    if not np.isfinite(value):
        return "nan"
    return f"{value:.{digits}f}"


def _csv_value(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        return repr(float(value)) if np.isfinite(value) else "nan"
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    return value


# ---------------------------------------------------------------------------- the sweep
@dataclass(frozen=True)
class _Candidate:
    """One fit of the sweep: what a worker process receives."""

    X_train: np.ndarray
    X_heldout: np.ndarray | None
    n_components: int
    covariance_type: str
    seed: int
    n_init: int
    params: dict


def _fit_one(task: _Candidate) -> tuple[dict[str, Any], GaussianMixture | None]:
    """Fit one (n_components, covariance_type) and score it (runs in a worker too)."""
    X_train, X_heldout, n_components = task.X_train, task.X_heldout, task.n_components
    cov_type, seed, n_init, params = task.covariance_type, task.seed, task.n_init, task.params
    row: dict[str, Any] = {
        "n_components": int(n_components), "covariance_type": cov_type,
        "n_parameters": n_parameters(n_components, X_train.shape[1], cov_type),
        "bic": math.nan, "aic": math.nan, "train_log_likelihood": math.nan,
        "heldout_log_likelihood": math.nan, "converged": False, "n_iter": 0,
        "fit_seconds": 0.0, "error": "",
    }
    est = GaussianMixture(n_components=n_components, covariance_type=cov_type,
                          random_state=seed, n_init=n_init, **params)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # Non-convergence is a column of the table, summarised once by the caller.
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X_train)
        train_ll = est.score(X_train)
    except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
        row["fit_seconds"] = time.perf_counter() - start
        row["error"] = f"{type(exc).__name__}: {exc}"[:200]
        return row, None
    row["fit_seconds"] = time.perf_counter() - start
    n = X_train.shape[0]
    # BIC/AIC from the same log-likelihood as the table's train column (one E-step pass).
    row["bic"] = float(-2.0 * train_ll * n + row["n_parameters"] * np.log(n))
    row["aic"] = float(-2.0 * train_ll * n + 2.0 * row["n_parameters"])
    row["train_log_likelihood"] = float(train_ll)
    if X_heldout is not None:
        row["heldout_log_likelihood"] = float(est.score(X_heldout))
    row["converged"] = bool(est.converged_)
    row["n_iter"] = int(est.n_iter_)
    return row, est


def _check_components(n_components: Any) -> list[int]:
    if isinstance(n_components, (int, np.integer)) and not isinstance(n_components, bool):
        values = [n_components]
    else:
        try:
            values = list(n_components)
        except TypeError:
            raise ValueError(f"n_components must be an integer or an iterable of integers; "
                             f"got {n_components!r}") from None
    if not values:
        raise ValueError("n_components is empty: give at least one number of components")
    for k in values:
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ValueError(f"n_components must hold integers >= 1; got {k!r}")
    return list(dict.fromkeys(int(k) for k in values))


def _check_covariance_types(covariance_types: Any) -> list[str]:
    if isinstance(covariance_types, str):
        covariance_types = [covariance_types]
    try:
        values = list(covariance_types)
    except TypeError:
        raise ValueError(f"covariance_types must be a covariance type or a sequence of them; "
                         f"got {covariance_types!r}") from None
    if not values:
        raise ValueError("covariance_types is empty: give at least one of "
                         f"{', '.join(COVARIANCE_TYPES)}")
    for c in values:
        if c not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_types must hold values among "
                             f"{', '.join(COVARIANCE_TYPES)}; got {c!r}")
    return list(dict.fromkeys(values))


def _check_estimator_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise ValueError(f"estimator_params must be a dict of GaussianMixture parameters; "
                         f"got {type(params).__name__}")
    swept = [name for name in params if name in _SWEPT]
    if swept:
        raise ValueError(f"estimator_params may not set {', '.join(swept)}: select_mixture sets "
                         "them (use its n_components, covariance_types, random_state and n_init)")
    valid = GaussianMixture._get_param_names()
    unknown = [name for name in params if name not in valid]
    if unknown:
        raise ValueError(f"estimator_params has unknown GaussianMixture parameter(s) "
                         f"{', '.join(map(repr, unknown))}; valid are: {', '.join(valid)}")
    return dict(params)


def _seed(random_state: Any) -> tuple[int, np.random.Generator]:
    """An integer seed shared by every fit (so results do not depend on ``jobs`` or on the
    order of the sweep), and a Generator for the held-out split."""
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, (bool, np.bool_)):
        seed = int(random_state)
    else:
        try:
            seed = draw_seed(check_random_state(random_state, legacy=True))
        except ValueError:
            raise ValueError(f"random_state must be an int, a numpy Generator/RandomState or None; "
                             f"got {random_state!r}") from None
    return seed, np.random.default_rng(seed)


def select_mixture(
    X: Any,
    n_components: int | Iterable[int] = range(1, 11),
    covariance_types: str | Sequence[str] = COVARIANCE_TYPES,
    criterion: str = "bic",
    *,
    X_heldout: Any = None,
    validation_fraction: float | None = None,
    random_state: Any = None,
    n_init: int = 1,
    estimator_params: Mapping[str, Any] | None = None,
    refit: bool = True,
    jobs: int = 1,
    show_progress: bool | None = None,
    progress: bool | None = None,
) -> SelectionResult:
    """Fit a :class:`GaussianMixture` for every ``n_components`` x ``covariance_type`` and
    choose one by BIC, AIC or held-out log-likelihood.

    Parameters
    ----------
    X : array_like, shape (n_samples, n_features)
        The data.
    n_components : int or iterable of int
        Sizes to try (default 1..10).
    covariance_types : str or sequence of str
        Any of ``"full"``, ``"tied"``, ``"diag"``, ``"spherical"`` (default all four).
    criterion : {"bic", "aic", "heldout"}
        How to choose: lowest BIC or AIC on the training data, or highest mean held-out
        log-likelihood.
    X_heldout : array_like, optional
        A validation set for the held-out score; then all of ``X`` is used for fitting.
    validation_fraction : float in (0, 1), optional
        Without ``X_heldout``, hold out this fraction of ``X`` (a random split seeded by
        ``random_state``) for the held-out score and fit on the rest. Defaults to 0.2 for
        ``criterion="heldout"`` and to no split for BIC/AIC (fit on all of ``X``; give a
        fraction to get the held-out column as well).
    random_state : int, numpy Generator/RandomState or None
        Seeds the split and every fit (every fit gets the same seed, so the table does not
        depend on ``jobs`` or on the order of the sweep).
    n_init : int
        Initialisations per fit (the best is kept).
    estimator_params : dict, optional
        Further :class:`GaussianMixture` parameters for every fit (``max_iter``, ``tol``,
        ``reg_covar``, ``init_params``, ...); not those the sweep sets.
    refit : bool
        When a validation split of ``X`` was held out, refit the chosen configuration on
        all of ``X`` for :attr:`SelectionResult.best_estimator_` (its scores in the table
        stay those of the split).
    jobs : int
        Worker processes for the fits (each with one BLAS thread); 1 fits in this
        process, 0 or None uses every core, negatives count back from them.
    show_progress : bool, optional
        Show a progress bar; by default only when stderr is a terminal (see
        :func:`speakergmm.utils.progress`).
    progress : bool, optional
        Deprecated name of ``show_progress`` (DeprecationWarning; it wins when given).

    Returns
    -------
    SelectionResult

    Raises
    ------
    ValueError
        For an unknown criterion or covariance type, sizes that are not positive integers
        or exceed the training samples, a bad ``validation_fraction``, ``estimator_params``
        naming unknown or swept parameters, or when every fit failed. A fit that fails
        (e.g. a covariance collapse) does not stop the sweep: its row carries the error and
        its scores are NaN.
    """
    show_progress = renamed_argument(show_progress, progress, former="progress", name="show_progress",
                                     owner="select_mixture")
    criterion = _check_criterion(criterion)
    sizes = _check_components(n_components)
    cov_types = _check_covariance_types(covariance_types)
    params = _check_estimator_params(estimator_params)
    if not isinstance(n_init, (int, np.integer)) or isinstance(n_init, bool) or n_init < 1:
        raise ValueError(f"n_init must be an integer >= 1; got {n_init!r}")
    if not isinstance(refit, (bool, np.bool_)):
        raise ValueError(f"refit must be True or False; got {refit!r}")
    if jobs is not None and (not isinstance(jobs, (int, np.integer)) or isinstance(jobs, bool)):
        raise ValueError(f"jobs must be an integer (0 or None: all cores); got {jobs!r}")
    X = validate_X(X, "X")
    seed, rng = _seed(random_state)
    try:  # bad values in estimator_params fail here once, not in every fit of the sweep
        GaussianMixture(n_components=sizes[0], covariance_type=cov_types[0],
                        **params)._check_parameters(X.shape[1])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"estimator_params: {exc}") from None

    if X_heldout is not None:
        if validation_fraction is not None:
            raise ValueError("give either X_heldout or validation_fraction, not both")
        X_train = X
        X_val = validate_X(X_heldout, "X_heldout", X.shape[1])
        split = False
    else:
        if validation_fraction is None and criterion == "heldout":
            validation_fraction = 0.2
        if validation_fraction is None:
            X_train, X_val, split = X, None, False
        else:
            if (not isinstance(validation_fraction, (float, int, np.number))
                    or isinstance(validation_fraction, bool)
                    or not 0.0 < float(validation_fraction) < 1.0):
                raise ValueError(f"validation_fraction must be a number in (0, 1); "
                                 f"got {validation_fraction!r}")
            n_val = int(round(float(validation_fraction) * X.shape[0]))
            if n_val < 1 or n_val >= X.shape[0]:
                raise ValueError(f"validation_fraction={validation_fraction} of {X.shape[0]} "
                                 f"samples leaves {n_val} for validation and "
                                 f"{X.shape[0] - n_val} for fitting; both need at least one")
            order = rng.permutation(X.shape[0])
            X_val, X_train = X[order[:n_val]], X[order[n_val:]]
            split = True
    if max(sizes) > X_train.shape[0]:
        raise ValueError(f"n_components up to {max(sizes)} needs at least that many training "
                         f"samples; there are {X_train.shape[0]}"
                         + (" after the validation split" if split else ""))

    tasks = [_Candidate(X_train, X_val, k, cov, seed, int(n_init), params)
             for cov in cov_types for k in sizes]
    n_jobs = min(effective_jobs(jobs), len(tasks))
    results: list[tuple[dict[str, Any], GaussianMixture | None]] = []
    desc = f"mixture sweep ({criterion})"
    if n_jobs <= 1:
        results = list(progress_bar((_fit_one(t) for t in tasks), desc=desc, total=len(tasks),
                                    enabled=show_progress, unit="fit"))
    else:
        with worker_pool(n_jobs) as pool:
            results = list(progress_bar(pool.map(_fit_one, tasks), desc=desc, total=len(tasks),
                                        enabled=show_progress, unit="fit"))

    rows = [row for row, _ in results]
    if not any(np.isfinite(row[_score_column(criterion)]) for row in rows):
        reasons = "; ".join(sorted({row["error"] for row in rows if row["error"]}))
        raise ValueError(f"every fit failed ({len(rows)} fits): {reasons}")
    best = _best_index(rows, criterion)
    n_bad = sum(1 for row in rows if not row["converged"] and not row["error"])
    if n_bad:
        warnings.warn(f"{n_bad} of {len(rows)} fits did not converge within max_iter (see the "
                      "'converged' column); consider a larger max_iter in estimator_params",
                      ConvergenceWarning, stacklevel=2)
    estimator = results[best][1]
    if split and refit:
        estimator = GaussianMixture(**{**estimator.get_params(deep=False)})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            estimator.fit(X)
    return SelectionResult(rows, criterion, best, estimator, X_train.shape[0],
                           0 if X_val is None else X_val.shape[0])
