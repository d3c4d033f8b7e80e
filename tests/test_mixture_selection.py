"""select_mixture: the sweep, the criteria, the table, the plot, and bad arguments."""

from __future__ import annotations

import csv
import sys
import warnings

import numpy as np
import pytest

from speakergmm.mixture import GaussianMixture, n_parameters
from speakergmm.mixture._base import ConvergenceWarning
from speakergmm.mixture.selection import COLUMNS, SelectionResult, select_mixture

MEANS = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
COVARIANCES = np.array([[[1.0, 0.5], [0.5, 0.8]], [[0.5, 0.0], [0.0, 1.5]],
                        [[0.9, -0.4], [-0.4, 0.6]]])


def three_blobs(n_per: int = 150, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.multivariate_normal(m, c, n_per) for m, c in zip(MEANS, COVARIANCES)])


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    return three_blobs()


@pytest.fixture(scope="module")
def bic_result(X) -> SelectionResult:
    return select_mixture(X, range(1, 6), ("full", "diag", "spherical"), random_state=0)


# ---------------------------------------------------------------------------- choices
def test_bic_picks_the_true_number_and_type(bic_result):
    assert bic_result.best_params_ == {"n_components": 3, "covariance_type": "full"}
    assert bic_result.criterion == "bic"
    best = bic_result.rows[bic_result.best_index_]
    assert best["bic"] == min(row["bic"] for row in bic_result.rows)
    assert bic_result.best_score_ == best["bic"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bic_picks_the_true_number_across_seeds(seed):
    result = select_mixture(three_blobs(seed=seed), range(1, 7), "full", random_state=seed)
    assert result.best_params_["n_components"] == 3


def test_table_scores_agree_with_the_estimator(X, bic_result):
    best = bic_result.best_estimator_
    row = bic_result.rows[bic_result.best_index_]
    assert row["bic"] == pytest.approx(best.bic(X), rel=1e-10)
    assert row["aic"] == pytest.approx(best.aic(X), rel=1e-10)
    assert row["train_log_likelihood"] == pytest.approx(best.score(X), rel=1e-12)
    assert row["n_components"] == best.n_components and row["covariance_type"] == best.covariance_type
    assert row["n_iter"] == best.n_iter_ and row["converged"] == best.converged_
    # Same seed, same fit: the sweep's model equals a direct fit.
    direct = GaussianMixture(n_components=3, covariance_type="full", random_state=0).fit(X)
    np.testing.assert_allclose(best.means_, direct.means_)


def test_every_row_and_column(X, bic_result):
    rows = bic_result.rows
    assert [(r["covariance_type"], r["n_components"]) for r in rows] == [
        (c, k) for c in ("full", "diag", "spherical") for k in range(1, 6)]
    for row in rows:
        assert set(row) == {name for name, _ in COLUMNS}
        assert row["n_parameters"] == n_parameters(row["n_components"], 2, row["covariance_type"])
        assert np.isnan(row["heldout_log_likelihood"])  # BIC without a split: nothing held out
        assert row["error"] == "" and row["fit_seconds"] >= 0
        n = X.shape[0]
        assert row["aic"] == pytest.approx(row["bic"] - row["n_parameters"] * (np.log(n) - 2))
    table = bic_result.table
    assert table.dtype.names == tuple(name for name, _ in COLUMNS)
    assert len(table) == 15
    np.testing.assert_array_equal(table["bic"], [r["bic"] for r in rows])
    assert bic_result.n_train_ == X.shape[0] and bic_result.n_heldout_ == 0
    # Full with 2 features: 3 + 2 + 1 parameters per component, minus one weight.
    assert rows[2]["n_parameters"] == 3 * 6 - 1


def test_best_row_per_criterion(bic_result):
    aic = bic_result.best_row("aic")
    assert aic["aic"] == min(r["aic"] for r in bic_result.rows)
    assert bic_result.best_row() == bic_result.rows[bic_result.best_index_]
    with pytest.raises(ValueError, match="no fit has a finite heldout"):
        bic_result.best_row("heldout")


def test_heldout_uses_a_seeded_split(X):
    a = select_mixture(X, [1, 2, 3, 4], "full", criterion="heldout", random_state=5, refit=False)
    b = select_mixture(X, [1, 2, 3, 4], "full", criterion="heldout", random_state=5, refit=False)
    assert a.n_heldout_ == round(0.2 * X.shape[0]) and a.n_train_ + a.n_heldout_ == X.shape[0]
    assert [r["heldout_log_likelihood"] for r in a.rows] == [r["heldout_log_likelihood"] for r in b.rows]
    best = a.rows[a.best_index_]
    assert best["heldout_log_likelihood"] == max(r["heldout_log_likelihood"] for r in a.rows)
    assert a.best_params_["n_components"] >= 3  # one or two components fit these blobs far worse
    c = select_mixture(X, [1, 2, 3, 4], "full", criterion="heldout", random_state=6, refit=False)
    assert [r["heldout_log_likelihood"] for r in a.rows] != [r["heldout_log_likelihood"] for r in c.rows]


def test_given_validation_set_and_refit(X):
    X_val = three_blobs(n_per=60, seed=9)
    result = select_mixture(X, [2, 3], "full", criterion="heldout", X_heldout=X_val, random_state=0)
    assert result.n_train_ == X.shape[0] and result.n_heldout_ == X_val.shape[0]
    row = result.rows[result.best_index_]
    # Fitted on all of X (no split), so the kept estimator's held-out score is the table's.
    assert result.best_estimator_.score(X_val) == pytest.approx(row["heldout_log_likelihood"])

    split = select_mixture(X, [3], "full", criterion="heldout", validation_fraction=0.3,
                           random_state=0, refit=True)
    refitted = split.best_estimator_
    direct = GaussianMixture(n_components=3, covariance_type="full", random_state=0).fit(X)
    np.testing.assert_allclose(refitted.means_, direct.means_)
    kept = select_mixture(X, [3], "full", criterion="heldout", validation_fraction=0.3,
                          random_state=0, refit=False).best_estimator_
    assert not np.allclose(kept.means_, direct.means_)


def test_bic_with_a_validation_fraction_also_reports_heldout(X):
    result = select_mixture(X, [1, 3], "full", validation_fraction=0.25, random_state=0)
    assert all(np.isfinite(r["heldout_log_likelihood"]) for r in result.rows)
    assert result.n_train_ == X.shape[0] - round(0.25 * X.shape[0])


def test_failed_fits_are_rows_not_crashes():
    X = np.repeat(np.array([[0.0, 0.0], [5.0, 1.0], [1.0, 5.0]]), 20, axis=0)
    result = select_mixture(X, [1, 2, 3], "diag", estimator_params={"reg_covar": 0.0},
                            random_state=0)
    errors = [r["error"] for r in result.rows]
    assert errors[0] == "" and all("CovarianceError" in e for e in errors[1:])
    assert all(np.isnan(r["bic"]) for r in result.rows[1:])
    assert result.best_params_ == {"n_components": 1, "covariance_type": "diag"}
    assert "CovarianceError" in str(result)


def test_every_fit_failing_is_an_error():
    X = np.zeros((20, 2))
    with pytest.raises(ValueError, match="every fit failed.*CovarianceError"):
        select_mixture(X, [1], "diag", estimator_params={"reg_covar": 0.0})


def test_non_convergence_is_summarised_once(X):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = select_mixture(X, [2, 3], "full", estimator_params={"max_iter": 1, "tol": 0.0},
                                random_state=0)
    conv = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert len(conv) == 1 and "2 of 2 fits did not converge" in str(conv[0].message)
    assert not any(r["converged"] for r in result.rows)
    assert "not converged" in str(result)


def test_parallel_jobs_give_the_same_table(X):
    one = select_mixture(X, [1, 2, 3], ("full", "tied"), random_state=3, jobs=1)
    two = select_mixture(X, [1, 2, 3], ("full", "tied"), random_state=3, jobs=2)
    for a, b in zip(one.rows, two.rows):
        for key in ("n_components", "covariance_type", "n_parameters", "converged", "n_iter", "error"):
            assert a[key] == b[key]
        # Workers use one BLAS thread, this process maybe more: equal up to rounding.
        for key in ("bic", "aic", "train_log_likelihood"):
            assert a[key] == pytest.approx(b[key], rel=1e-9)
    assert one.best_params_ == two.best_params_
    np.testing.assert_allclose(one.best_estimator_.means_, two.best_estimator_.means_, rtol=1e-8)


def test_single_values_and_duplicates(X):
    result = select_mixture(X, 3, "tied", random_state=0)
    assert len(result.rows) == 1 and result.best_params_ == {"n_components": 3, "covariance_type": "tied"}
    result = select_mixture(X, [2, 2, 1], ["diag", "diag"], random_state=0)
    assert [r["n_components"] for r in result.rows] == [2, 1]


# ---------------------------------------------------------------------------- output
def test_csv_round_trip(tmp_path, bic_result):
    path = bic_result.to_csv(tmp_path / "sub" / "sweep.csv")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [name for name, _ in COLUMNS]
    assert len(rows) == len(bic_result.rows)
    for text, row in zip(rows, bic_result.rows):
        assert float(text["bic"]) == row["bic"]  # full precision
        assert int(text["n_components"]) == row["n_components"]
        assert text["converged"] == ("true" if row["converged"] else "false")
        assert text["heldout_log_likelihood"] == "nan"
    assert not list(tmp_path.glob("sub/.*tmp"))  # atomic: no temporary left


def test_str_marks_the_best_row(bic_result):
    text = str(bic_result)
    lines = text.splitlines()
    assert lines[0].startswith("Mixture selection by bic (lower is better), 450 training samples")
    marked = [line for line in lines if line.startswith("*")]
    assert len(marked) == 1 and " 3  full" in marked[0]
    assert lines[-1].startswith("best: {'n_components': 3, 'covariance_type': 'full'}")
    assert "heldout LL" not in lines[1]
    assert "criterion='bic'" in repr(bic_result)


def test_plot_draws_each_covariance_type(tmp_path, bic_result):
    pytest.importorskip("matplotlib")
    ax = bic_result.plot(path=tmp_path / "bic.png")
    assert (tmp_path / "bic.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[:3] == ["full", "diag", "spherical"] and "chosen by bic" in labels[3]
    xs, ys = ax.get_lines()[0].get_data()
    np.testing.assert_array_equal(xs, [1, 2, 3, 4, 5])
    np.testing.assert_allclose(ys, [r["bic"] for r in bic_result.rows[:5]])
    ax2 = bic_result.plot(criterion="aic")
    np.testing.assert_allclose(ax2.get_lines()[0].get_data()[1], [r["aic"] for r in bic_result.rows[:5]])
    assert "AIC" in ax2.get_ylabel()
    with pytest.raises(ValueError, match="unsupported figure format"):
        bic_result.plot(path=tmp_path / "bic.jpg")
    with pytest.raises(ValueError, match="criterion must be one of"):
        bic_result.plot(criterion="likelihood")


def test_plot_without_matplotlib_says_which_extra(monkeypatch, bic_result):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"speakergmm\[plot\]"):
        bic_result.plot()


# ---------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("kwargs, message", [
    (dict(criterion="likelihood"), "criterion must be one of"),
    (dict(covariance_types=("full", "round")), "covariance_types must hold"),
    (dict(covariance_types=()), "covariance_types is empty"),
    (dict(n_components=[]), "n_components is empty"),
    (dict(n_components=[0, 1]), "integers >= 1; got 0"),
    (dict(n_components=[2.5]), "integers >= 1; got 2.5"),
    (dict(n_components=True), "n_components must be an integer or an iterable.*got True"),
    (dict(n_components=None), "n_components must be an integer or an iterable"),
    (dict(n_components=[500]), "needs at least that many training samples; there are 450"),
    (dict(criterion="heldout", n_components=[400]), "after the validation split"),
    (dict(validation_fraction=0.0), r"validation_fraction must be a number in \(0, 1\)"),
    (dict(validation_fraction=1.0), r"validation_fraction must be a number in \(0, 1\)"),
    (dict(validation_fraction="0.2"), r"validation_fraction must be a number in \(0, 1\)"),
    (dict(validation_fraction=0.0001), "leaves 0 for validation"),
    (dict(X_heldout=np.zeros((5, 2)), validation_fraction=0.2), "either X_heldout or validation_fraction"),
    (dict(X_heldout=np.zeros((5, 3))), "X_heldout"),
    (dict(estimator_params={"n_components": 3}), "may not set n_components"),
    (dict(estimator_params={"random_state": 3}), "may not set random_state"),
    (dict(estimator_params={"max_iters": 3}), "unknown GaussianMixture parameter.*'max_iters'"),
    (dict(estimator_params=[("max_iter", 3)]), "estimator_params must be a dict"),
    (dict(estimator_params={"max_iter": -1}), "estimator_params: max_iter must be an integer >= 0"),
    (dict(n_init=0), "n_init must be an integer >= 1"),
    (dict(refit="yes"), "refit must be True or False"),
    (dict(jobs="2"), "jobs must be an integer"),
    (dict(random_state="seed"), "random_state must be an int"),
])
def test_bad_arguments(X, kwargs, message):
    with pytest.raises(ValueError, match=message):
        select_mixture(X, **{"n_components": [1, 2], **kwargs})


@pytest.mark.parametrize("data, message", [
    (np.zeros(10), "2-D array"),
    (np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 4.0]]), "NaN|finite"),
    (np.zeros((0, 2)), "0 sample"),
])
def test_bad_data(data, message):
    with pytest.raises(ValueError, match=message):
        select_mixture(data, [1])


def test_progress_bar_on_request(X, capsys):
    select_mixture(X, [1, 2], "diag", random_state=0, show_progress=True)
    assert "mixture sweep (bic)" in capsys.readouterr().err
    select_mixture(X, [1, 2], "diag", random_state=0, show_progress=False)
    assert "mixture sweep" not in capsys.readouterr().err
