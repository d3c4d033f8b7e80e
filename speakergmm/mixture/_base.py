"""What the mixture estimators share: the scikit-learn estimator protocol and inference.

:class:`MixtureEstimator` is the base of :class:`~speakergmm.mixture.GaussianMixture` (EM)
and :class:`~speakergmm.mixture.BayesianGaussianMixture` (variational inference). It owns
no fitting: it provides

- the estimator protocol scikit-learn's tools rely on (``get_params`` / ``set_params``
  with nested ``a__b`` names, ``sklearn.base.clone``, tags for ``GridSearchCV`` and
  ``Pipeline``, ``__sklearn_is_fitted__``), without importing scikit-learn at run time;
- checks shared by every estimator's hyperparameters and inputs;
- inference on the fitted mixture (``score_samples``, ``score``, ``predict``,
  ``predict_proba``, ``sample``), which a subclass may route through a different mixture
  than its point estimate (a variational mixture scores with expected log-weights and
  log-densities);
- the uniform initialisation sample drawn from a chunk source (the initialisations
  themselves live in :mod:`speakergmm.mixture.init`).
"""

from __future__ import annotations

import copy
import inspect
import sys
from typing import Any

import numpy as np

from speakergmm.mixture._covariance import COVARIANCE_TYPES
from speakergmm.mixture.em import ConvergenceWarning  # noqa: F401  (re-exported)
from speakergmm.mixture.init import check_random_state
from speakergmm.mixture.sources import ChunkSource, iter_chunks
from speakergmm.mixture.model import GMM, check_frames, check_sample_weight


class NotFittedError(ValueError, AttributeError):
    """The estimator is used before ``fit``."""


_SKLEARN_NOT_FITTED: dict[type, type] = {}


def not_fitted_error(message: str) -> NotFittedError:
    """A :class:`NotFittedError` (scikit-learn's too when scikit-learn is loaded) to raise
    when an estimator is used before ``fit``."""
    return _not_fitted_error_class()(message)


def _not_fitted_error_class() -> type:
    """:class:`NotFittedError`, which is also scikit-learn's when scikit-learn is loaded.

    scikit-learn's tools catch their own ``NotFittedError``; whoever can name that class
    has imported it, so checking ``sys.modules`` at raise time is enough, and speakergmm
    never imports scikit-learn itself.
    """
    exceptions = sys.modules.get("sklearn.exceptions")
    if exceptions is None:
        return NotFittedError
    base = exceptions.NotFittedError
    if base not in _SKLEARN_NOT_FITTED:
        _SKLEARN_NOT_FITTED[base] = type("NotFittedError", (NotFittedError, base),
                                         {"__module__": __name__, "__doc__": NotFittedError.__doc__})
    return _SKLEARN_NOT_FITTED[base]


def validate_X(X: Any, name: str = "X", n_features: int | None = None,
               estimator: str = "the model") -> np.ndarray:
    """Check data given to an estimator: :func:`check_frames` with the estimator API's
    rules (2-D always, at least one sample)."""
    return check_frames(X, name, n_features, estimator=estimator, min_samples=1)


def _same(value: Any, default: Any) -> bool:
    """Whether a parameter still has its default (for the repr); arrays never do."""
    if isinstance(value, np.ndarray) or isinstance(default, np.ndarray):
        return False
    try:
        return bool(value is default or value == default)
    except (TypeError, ValueError):
        return False


def clone(estimator: Any, **overrides: Any) -> Any:
    """An unfitted copy of ``estimator`` with the same constructor parameters
    (scikit-learn's ``clone``, without importing scikit-learn).

    Nested estimators (parameters with ``get_params``) are cloned, other parameters deep
    copied; ``overrides`` replace constructor parameters of the copy. Something without
    ``get_params`` is deep copied.
    """
    if not hasattr(estimator, "get_params"):
        if overrides:
            raise TypeError(f"cannot override parameters of {type(estimator).__name__}, which has none")
        return copy.deepcopy(estimator)
    params = {name: clone(value) if hasattr(value, "get_params") and not isinstance(value, type)
              else copy.deepcopy(value)
              for name, value in estimator.get_params(deep=False).items()}
    params.update(overrides)
    return type(estimator)(**params)


class ParamsMixin:
    """The estimator protocol scikit-learn's tools rely on, without importing scikit-learn.

    Constructor parameters are the attributes named in ``__init__``'s signature (stored
    unchanged, as ``clone`` requires); ``name__param`` reaches into nested estimators;
    ``_ESTIMATOR_TYPE`` is the scikit-learn estimator type reported in the tags.
    """

    _ESTIMATOR_TYPE: str | None = None

    @classmethod
    def _get_param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return sorted(name for name, p in signature.parameters.items()
                      if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters (and, with ``deep``, those of nested estimators)."""
        params: dict[str, Any] = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                params.update((f"{name}__{key}", v) for key, v in value.get_params().items())
            params[name] = value
        return params

    def set_params(self, **params: Any) -> "ParamsMixin":
        """Set constructor parameters (``name__param`` reaches into nested estimators)."""
        names = self._get_param_names()
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            name, delimiter, sub = key.partition("__")
            if name not in names:
                raise ValueError(
                    f"invalid parameter {name!r} for {type(self).__name__}; valid parameters "
                    f"are: {', '.join(names)}"
                )
            if delimiter:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():
            target = getattr(self, name)
            if target is None or not hasattr(target, "set_params"):
                raise ValueError(f"cannot set {', '.join(name + '__' + k for k in sub_params)}: "
                                 f"{name} is {target!r}, which has no parameters")
            target.set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        defaults = {name: p.default for name, p in inspect.signature(type(self).__init__).parameters.items()}
        shown = [f"{name}={getattr(self, name)!r}" for name in self._get_param_names()
                 if not _same(getattr(self, name), defaults.get(name, inspect.Parameter.empty))]
        return f"{type(self).__name__}({', '.join(shown)})"

    def __sklearn_tags__(self) -> Any:
        # Only scikit-learn calls this, so importing it here costs nothing otherwise.
        from sklearn.utils import Tags, TargetTags

        return Tags(estimator_type=self._ESTIMATOR_TYPE, target_tags=TargetTags(required=False),
                    transformer_tags=None, regressor_tags=None, classifier_tags=None)


class MixtureEstimator(ParamsMixin):
    """Base class of the mixture estimators (see the module docstring)."""

    _ESTIMATOR_TYPE = "density_estimator"
    #: Names of the initialisations a subclass accepts (validated by ``_check_common``).
    _INIT_METHODS: tuple[str, ...] = ()

    def __sklearn_is_fitted__(self) -> bool:
        return getattr(self, "_gmm", None) is not None

    # ------------------------------------------------------------------ checks
    def _check_common(self, n_features: int) -> None:
        """Validate the hyperparameters every estimator has; errors name the parameter."""
        def integer(name: str, minimum: int) -> None:
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")

        integer("n_components", 1)
        integer("max_iter", 0)
        integer("n_init", 1)
        integer("max_init_samples", 1)
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_type must be one of {', '.join(COVARIANCE_TYPES)}; "
                             f"got {self.covariance_type!r}")
        if self.init_params not in self._INIT_METHODS:
            raise ValueError(f"init_params must be one of {', '.join(self._INIT_METHODS)}; "
                             f"got {self.init_params!r}")
        for name in ("tol", "reg_covar"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float, np.number)) and np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number; got {value!r}")
        try:
            dtype = np.dtype(self.dtype)
        except TypeError:
            dtype = None
        if dtype not in (np.float64, np.float32):
            raise ValueError(f"dtype must be float64 or float32; got {self.dtype!r}")

    def _check_enough_samples(self, n_samples: int) -> None:
        if n_samples == 0:
            raise ValueError("no data to fit: every sample weight is zero (or no samples)")
        if n_samples < self.n_components:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components={self.n_components}, "
                f"n_samples={n_samples}"
            )

    def _check_fitted(self) -> GMM:
        gmm = getattr(self, "_gmm", None)
        if gmm is None:
            raise not_fitted_error(f"This {type(self).__name__} instance is not fitted yet; call fit "
                                   "(or load a model) first")
        return gmm

    def _inference_model(self) -> tuple[GMM, float]:
        """The mixture that scores and assigns frames, and a constant added to its log-likelihoods."""
        return self._check_fitted(), 0.0

    def _X(self, X: Any) -> np.ndarray:
        return validate_X(X, "X", self._check_fitted().n_features, type(self).__name__)

    # ------------------------------------------------------------------ fitted parameters
    weights_ = property(lambda self: self._check_fitted().weights)
    means_ = property(lambda self: self._check_fitted().means)
    covariances_ = property(lambda self: self._check_fitted().covariances)
    precisions_cholesky_ = property(lambda self: self._check_fitted().precisions_cholesky)
    precisions_ = property(lambda self: self._check_fitted().precisions)

    @property
    def gmm_(self) -> GMM:
        """The fitted parameters (the point estimate) as a core :class:`GMM`."""
        return self._check_fitted()

    # ------------------------------------------------------------------ inference
    def score_samples(self, X: Any) -> np.ndarray:
        """Per-sample log-likelihood ``log p(x)``, (n_samples,)."""
        model, offset = self._inference_model()
        return model.score_samples(self._X(X)) + offset

    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:
        """Mean (weighted) per-sample log-likelihood (higher is better; ``y`` is ignored)."""
        log_prob = self.score_samples(X)
        w = check_sample_weight(sample_weight, log_prob.shape[0])
        return float(np.average(log_prob, weights=w))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Posterior probability of each component for each sample, (n_samples, n_components)."""
        model, _ = self._inference_model()
        return np.asarray(model.predict_proba(self._X(X)), dtype=np.float64)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable component of each sample, (n_samples,)."""
        model, _ = self._inference_model()
        return np.argmax(model.log_joint(self._X(X)), axis=1)

    def fit_predict(self, X: Any, y: Any = None, sample_weight: Any = None) -> np.ndarray:
        """Fit, then return the component labels of ``X``."""
        return self.fit(X, sample_weight=sample_weight).predict(X)

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw samples; returns ``(X, y)`` with component labels, grouped by component."""
        return self._check_fitted().sample(n_samples, self.random_state)

    # ------------------------------------------------------------------ chunk sources
    def _collect_sample(self, chunks: ChunkSource) -> tuple[np.ndarray, np.ndarray | None, int, int]:
        """A uniform sample of at most ``max_init_samples`` frames (reservoir by random keys).

        Returns ``(sample, sample_weight or None, n_features, n_frames)``.
        """
        rng = check_random_state(self.random_state if not isinstance(self.random_state, int)
                                 else self.random_state + 7919)
        keep_X, keep_w, keep_keys = [], [], []
        n_total, n_features, weighted = 0, None, False
        cap = int(self.max_init_samples)
        for X, w in iter_chunks(chunks):
            if n_features is None:
                n_features = X.shape[1]
            elif X.shape[1] != n_features:
                raise ValueError(f"chunks have {X.shape[1]} and {n_features} features")
            mask = slice(None) if w is None else w > 0
            X_pos = X[mask]
            n_total += X_pos.shape[0]
            weighted |= w is not None
            keep_X.append(X_pos)
            keep_w.append(np.ones(X_pos.shape[0]) if w is None else w[mask])
            keep_keys.append(rng.random(X_pos.shape[0]))
            if sum(x.shape[0] for x in keep_X) > 2 * cap:
                keep_X, keep_w, keep_keys = _reservoir(keep_X, keep_w, keep_keys, cap)
        if n_features is None:
            raise ValueError("the chunk source yielded no data")
        keep_X, keep_w, keep_keys = _reservoir(keep_X, keep_w, keep_keys, cap)
        return keep_X[0], (keep_w[0] if weighted else None), n_features, n_total


def _reservoir(xs: list, ws: list, keys: list, cap: int) -> tuple[list, list, list]:
    X, w, k = np.concatenate(xs), np.concatenate(ws), np.concatenate(keys)
    if X.shape[0] > cap:
        keep = np.argpartition(k, cap)[:cap]
        keep.sort()
        X, w, k = X[keep], w[keep], k[keep]
    return [X], [w], [k]
