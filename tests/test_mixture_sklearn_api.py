"""Both mixture estimators are proper scikit-learn estimators.

``get_params`` / ``set_params`` (nested too), ``sklearn.base.clone``, ``GridSearchCV``,
``Pipeline``, ``check_is_fitted`` and scikit-learn's own estimator checks
(``check_estimator``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import check_estimator
from sklearn.utils.validation import check_is_fitted

from speakergmm import BayesianGaussianMixture, GaussianMixture
from speakergmm.mixture import NotFittedError

pytestmark = [pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
              pytest.mark.filterwarnings("ignore::speakergmm.mixture.ConvergenceWarning")]

ESTIMATORS = [
    pytest.param(lambda **kw: GaussianMixture(**kw), id="GaussianMixture"),
    pytest.param(lambda **kw: BayesianGaussianMixture(**kw), id="BayesianGaussianMixture"),
]


@pytest.fixture(scope="module")
def three_blobs() -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    return np.vstack([c + rng.normal(size=(120, 2)) for c in centres])[rng.permutation(360)]


@pytest.mark.parametrize("make", ESTIMATORS)
def test_clone_keeps_parameters_and_drops_the_fit(make, three_blobs):
    est = make(n_components=3, covariance_type="diag", random_state=4, tol=1e-4)
    est.fit(three_blobs)
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    assert type(copy) is type(est)
    with pytest.raises(NotFittedError):
        copy.predict(three_blobs)
    with pytest.raises(SklearnNotFittedError):
        check_is_fitted(copy)
    check_is_fitted(est)
    assert get_tags(est).estimator_type == "density_estimator"
    assert get_tags(est).target_tags.required is False


@pytest.mark.parametrize("make", ESTIMATORS)
def test_not_fitted_error_is_also_scikit_learns(make, three_blobs):
    with pytest.raises(SklearnNotFittedError, match="not fitted yet"):
        make().score_samples(three_blobs)


@pytest.mark.parametrize("make", ESTIMATORS)
def test_grid_search_picks_the_true_number_of_components(make, three_blobs):
    search = GridSearchCV(make(random_state=0, covariance_type="full"),
                          {"n_components": [1, 2, 3]}, cv=KFold(3, shuffle=True, random_state=0))
    search.fit(three_blobs)
    assert search.best_params_ == {"n_components": 3}
    assert search.best_estimator_.n_components == 3
    assert search.score(three_blobs) == pytest.approx(search.best_estimator_.score(three_blobs))


@pytest.mark.parametrize("make", ESTIMATORS)
def test_pipeline_and_nested_parameters(make, three_blobs):
    pipe = make_pipeline(StandardScaler(), make(n_components=2, random_state=0))
    name = pipe.steps[-1][0]
    pipe.set_params(**{f"{name}__n_components": 3, f"{name}__covariance_type": "diag"})
    assert pipe.get_params()[f"{name}__n_components"] == 3
    pipe.fit(three_blobs)
    labels = pipe.predict(three_blobs)
    assert len(np.unique(labels)) == 3
    scaled = StandardScaler().fit_transform(three_blobs)
    assert pipe.score(three_blobs) == pytest.approx(pipe[-1].score(scaled))
    search = GridSearchCV(pipe, {f"{name}__covariance_type": ["spherical", "full"]}, cv=3).fit(three_blobs)
    assert search.best_params_[f"{name}__covariance_type"] in ("spherical", "full")


def test_set_params_reaches_nested_estimators():
    """A meta-estimator holding one of ours (as speakergmm's anomaly detector does)."""
    class Holder(GaussianMixture):
        def __init__(self, n_components=1, inner=None):
            super().__init__(n_components)
            self.inner = inner

    holder = Holder(inner=BayesianGaussianMixture(n_components=2))
    holder.set_params(inner__n_components=5, n_components=2)
    assert holder.inner.n_components == 5 and holder.n_components == 2
    assert holder.get_params()["inner__n_components"] == 5
    with pytest.raises(ValueError, match="invalid parameter 'nope' for BayesianGaussianMixture"):
        holder.set_params(inner__nope=1)


@pytest.mark.parametrize("make", ESTIMATORS)
def test_repr_shows_the_changed_parameters(make):
    est = make(n_components=4, covariance_type="tied")
    text = repr(est)
    assert text.startswith(type(est).__name__ + "(")
    assert "n_components=4" in text and "covariance_type='tied'" in text and "tol" not in text


def test_partial_fit_continues_a_batch_fit(three_blobs):
    est = GaussianMixture(3, random_state=0).fit(three_blobs)
    before = est.score(three_blobs)
    for batch in np.array_split(three_blobs, 4):
        est.partial_fit(batch)
    assert est.score(three_blobs) == pytest.approx(before, abs=0.05)


@pytest.mark.parametrize("make", ESTIMATORS)
def test_scikit_learn_estimator_checks(make):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(make(), on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:300]) for r in results
              if r["status"] == "failed"]
    assert not failed
    assert len(results) > 40
