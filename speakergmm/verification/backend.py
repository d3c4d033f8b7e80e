"""Back end for i-vectors (or any fixed-length embeddings): transforms and scorers.

Each piece is a small estimator with ``fit(X, y)`` and ``transform(X)`` (or ``score``) and
``save``/``load`` through :mod:`speakergmm.io` plain model files:

- :class:`Whitening` centres and whitens (``x -> W^T (x - mu)``, ``W^T Cov W = I``);
- :class:`LengthNorm` scales every vector to length ``sqrt(dim)`` (Garcia-Romero 2011);
- :class:`LDA` projects on the leading generalised eigenvectors of the between- and
  within-speaker scatter (within-speaker covariance = I in the output);
- :class:`WCCN` whitens the within-speaker covariance (Hatch 2006);
- :class:`PLDA` is the two-covariance model (Brümmer & de Villiers 2010): speaker means
  ``y ~ N(mu, B)``, vectors ``x | y ~ N(y, W)``, trained by EM (or in closed form from the
  scatters), with optional shrinkage of ``B`` and ``W`` towards their mean eigenvalue;
  :meth:`PLDA.score` gives the exact log-likelihood ratio of "same speaker" for models
  enrolled from any number of vectors;
- :func:`cosine_scores` is the cosine similarity baseline;
- :class:`Chain` applies transforms in turn and saves them in one file.

Within-speaker statistics need speaker labels ``y``; classes with one vector contribute
to the between-speaker, not to the within-speaker scatter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from speakergmm.io import ModelFileError, load_model_file, save_model_file
from speakergmm.verification.sources import VerificationError

__all__ = ["Whitening", "LengthNorm", "LDA", "WCCN", "PLDA", "Chain", "cosine_scores",
           "class_scatter", "BACKEND_FORMAT"]

BACKEND_FORMAT = "speakergmm.Backend"
BACKEND_VERSION = 1
_LOG_2PI = float(np.log(2.0 * np.pi))


def _check_X(X: Any, name: str = "X", dim: int | None = None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise VerificationError(f"{name} must be a non-empty 2-D array (n_vectors, dim); got shape {X.shape}")
    if dim is not None and X.shape[1] != dim:
        raise VerificationError(f"{name}: {X.shape[1]}-dimensional vectors, the model expects {dim}")
    if not np.all(np.isfinite(X)):
        raise VerificationError(f"{name} contains NaN or infinity")
    return X


def _check_labels(y: Any, n: int) -> np.ndarray:
    if y is None:
        raise VerificationError("speaker labels y are needed to fit this transform")
    y = np.asarray(y)
    if y.shape != (n,):
        raise VerificationError(f"y must hold one label per vector ({n}); got shape {y.shape}")
    return y


def class_scatter(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Global mean, between-class and within-class covariance (per vector), classes.

    Between: ``sum_c n_c (mu_c - mu)(mu_c - mu)^T / N``; within:
    ``sum_c sum_i (x_i - mu_c)(x_i - mu_c)^T / N``.
    """
    labels, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    mu = X.mean(axis=0)
    sums = np.zeros((len(labels), X.shape[1]))
    np.add.at(sums, inverse, X)
    means = sums / counts[:, None]
    dev = X - means[inverse]
    within = dev.T @ dev / X.shape[0]
    cm = means - mu
    between = (cm * counts[:, None]).T @ cm / X.shape[0]
    return mu, between, within, len(labels)


def _inv_sqrt(C: np.ndarray, floor: float = 1e-10) -> np.ndarray:
    vals, vecs = np.linalg.eigh(0.5 * (C + C.T))
    vals = np.maximum(vals, floor * max(vals.max(), floor))
    return vecs / np.sqrt(vals)


class _Saved:
    """Save/load through plain model files: subclasses list their array attributes."""

    _arrays: tuple[str, ...] = ()
    _params: tuple[str, ...] = ()

    def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        missing = [a for a in self._arrays if not hasattr(self, a)]
        if missing:
            raise VerificationError(f"{type(self).__name__} is not fitted")
        return ({a: np.asarray(getattr(self, a)) for a in self._arrays},
                {p: getattr(self, p) for p in self._params})

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], params: dict[str, Any]) -> Any:
        obj = cls(**params)
        for a in cls._arrays:
            if a not in arrays:
                raise ModelFileError(f"{cls.__name__}: array {a!r} missing")
            setattr(obj, a, np.asarray(arrays[a], dtype=np.float64))
        obj._loaded()
        return obj

    def _loaded(self) -> None:
        pass

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's arguments (scikit-learn's estimator protocol)."""
        return {p: getattr(self, p) for p in self._params}

    def __sklearn_tags__(self) -> Any:
        # Only scikit-learn calls this (Pipeline, clone), so importing it here costs nothing otherwise.
        from sklearn.utils import Tags, TargetTags, TransformerTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False),
                    transformer_tags=None if isinstance(self, PLDA) else TransformerTags(),
                    regressor_tags=None, classifier_tags=None)

    def set_params(self, **params: Any) -> Any:
        """Set constructor arguments (scikit-learn's estimator protocol); refit afterwards."""
        for name, value in params.items():
            if name not in self._params:
                raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}; valid: "
                                 f"{', '.join(self._params) or '(none)'}")
            setattr(self, name, value)
        return self

    def save(self, path: str | Path) -> None:
        Chain([self]).save(path)

    @classmethod
    def load(cls, path: str | Path) -> Any:
        chain = Chain.load(path)
        if len(chain.steps) != 1 or not isinstance(chain.steps[0], cls):
            raise ModelFileError(f"{path}: not a single {cls.__name__}")
        return chain.steps[0]

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        return self.fit(X, y).transform(X)  # type: ignore[attr-defined]


class Whitening(_Saved):
    """Centring and whitening by the total covariance (``W = V diag(1/sqrt(lambda))``)."""

    _arrays = ("mean_", "transform_")

    def fit(self, X: Any, y: Any = None) -> "Whitening":
        X = _check_X(X)
        self.mean_ = X.mean(axis=0)
        Xc = X - self.mean_
        self.transform_ = _inv_sqrt(Xc.T @ Xc / X.shape[0])
        return self

    def transform(self, X: Any) -> np.ndarray:
        X = _check_X(X, dim=self.mean_.shape[0])
        return (X - self.mean_) @ self.transform_


class LengthNorm(_Saved):
    """Scale every vector to length ``sqrt(dim)`` (nothing to fit)."""

    def fit(self, X: Any, y: Any = None) -> "LengthNorm":
        return self

    def transform(self, X: Any) -> np.ndarray:
        X = _check_X(X)
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        return X * (np.sqrt(X.shape[1]) / np.where(norms > 0, norms, 1.0))


class LDA(_Saved):
    """Linear discriminant analysis to ``n_components`` dimensions.

    The projection ``V`` solves ``S_b v = lambda S_w v`` with ``V^T S_w V = I`` (largest
    ``lambda`` first); ``transform`` gives ``(x - mu) V``.
    """

    _arrays = ("mean_", "scalings_", "eigenvalues_")
    _params = ("n_components", "reg")

    def __init__(self, n_components: int = 50, reg: float = 0.0):
        self.n_components = int(n_components)
        self.reg = float(reg)

    def fit(self, X: Any, y: Any = None) -> "LDA":
        X = _check_X(X)
        y = _check_labels(y, X.shape[0])
        mu, between, within, n_classes = class_scatter(X, y)
        if n_classes < 2:
            raise VerificationError("LDA needs at least 2 speakers")
        if self.n_components > X.shape[1]:
            raise VerificationError(f"LDA to {self.n_components} dimensions from {X.shape[1]}-dimensional vectors")
        within = within + self.reg * np.trace(within) / X.shape[1] * np.eye(X.shape[1])
        Wi = _inv_sqrt(within)
        vals, vecs = np.linalg.eigh(Wi.T @ between @ Wi)
        order = np.argsort(vals)[::-1][: self.n_components]
        self.mean_ = mu
        self.scalings_ = Wi @ vecs[:, order]
        self.eigenvalues_ = vals[order]
        return self

    def transform(self, X: Any) -> np.ndarray:
        X = _check_X(X, dim=self.mean_.shape[0])
        return (X - self.mean_) @ self.scalings_


class WCCN(_Saved):
    """Within-class covariance normalisation: ``x -> x B`` with ``B B^T = S_w^{-1}``
    (``B`` the Cholesky factor of the inverse within-speaker covariance)."""

    _arrays = ("transform_",)
    _params = ("reg",)

    def __init__(self, reg: float = 0.0):
        self.reg = float(reg)

    def fit(self, X: Any, y: Any = None) -> "WCCN":
        X = _check_X(X)
        y = _check_labels(y, X.shape[0])
        _, _, within, _ = class_scatter(X, y)
        within = within + self.reg * np.trace(within) / X.shape[1] * np.eye(X.shape[1])
        self.transform_ = np.linalg.cholesky(np.linalg.inv(within))
        return self

    def transform(self, X: Any) -> np.ndarray:
        X = _check_X(X, dim=self.transform_.shape[0])
        return X @ self.transform_


def _shrink(C: np.ndarray, amount: float) -> np.ndarray:
    if amount <= 0:
        return C
    return (1.0 - amount) * C + amount * np.trace(C) / C.shape[0] * np.eye(C.shape[0])


class PLDA(_Saved):
    """Two-covariance PLDA: ``y_s ~ N(mu, B)``, ``x_i | y_s ~ N(y_s, W)``.

    Parameters
    ----------
    n_iter : int
        EM iterations (0: the closed-form estimate from the between/within scatters,
        which is also EM's starting point).
    shrinkage : float in [0, 1)
        Each M-step shrinks ``B`` and ``W`` towards their mean eigenvalue times I by this
        fraction (regularises the model on few speakers).

    Attributes
    ----------
    mean_, between_, within_ : the parameters ``mu``, ``B``, ``W``
    transform_, psi_ : a basis with ``V^T W V = I`` and ``V^T B V = diag(psi)``,
        in which the scores are computed dimension by dimension.
    history_ : per-vector log-likelihood of the training data before each EM iteration
    """

    _arrays = ("mean_", "between_", "within_")
    _params = ("n_iter", "shrinkage")

    def __init__(self, n_iter: int = 10, shrinkage: float = 0.0):
        if int(n_iter) < 0:
            raise ValueError(f"n_iter must be >= 0; got {n_iter}")
        if not 0.0 <= float(shrinkage) < 1.0:
            raise ValueError(f"shrinkage must be in [0, 1); got {shrinkage}")
        self.n_iter = int(n_iter)
        self.shrinkage = float(shrinkage)

    def fit(self, X: Any, y: Any = None) -> "PLDA":
        X = _check_X(X)
        y = _check_labels(y, X.shape[0])
        mu, between, within, n_classes = class_scatter(X, y)
        if n_classes < 2 or n_classes == X.shape[0]:
            raise VerificationError("PLDA needs at least 2 speakers and some speaker with 2 or more vectors")
        n_within = X.shape[0] - n_classes
        self.mean_ = mu
        self.within_ = _shrink(within * X.shape[0] / n_within, self.shrinkage)
        self.between_ = _shrink(between, self.shrinkage)
        labels, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
        sums = np.zeros((len(labels), X.shape[1]))
        np.add.at(sums, inverse, X)
        self.history_: list[float] = []
        for _ in range(self.n_iter):
            self.history_.append(self._em_step(X, inverse, counts, sums))
        self._loaded()
        return self

    def _em_step(self, X: np.ndarray, inverse: np.ndarray, counts: np.ndarray, sums: np.ndarray) -> float:
        """One EM iteration of the two-covariance model; returns the log-likelihood per
        vector of the data under the parameters before the update."""
        Bi = np.linalg.inv(self.between_)
        Wi = np.linalg.inv(self.within_)
        D = X.shape[1]
        loglik = 0.0
        Ey = np.empty_like(sums)
        Eyy = np.zeros((D, D))
        # Speakers with the same count share the posterior covariance.
        for n in np.unique(counts):
            idx = np.flatnonzero(counts == n)
            prec = Bi + n * Wi
            cov = np.linalg.inv(prec)
            rhs = (Bi @ self.mean_)[None, :] + sums[idx] @ Wi
            Ey[idx] = rhs @ cov
            Eyy += len(idx) * cov + Ey[idx].T @ Ey[idx]
            # Marginal likelihood of the n vectors of each such speaker.
            loglik += len(idx) * self._class_loglik_const(n, cov, Bi, Wi)
            loglik += float(0.5 * np.einsum("ij,jk,ik->", rhs, cov, rhs) - 0.5 * len(idx) * self.mean_ @ Bi @ self.mean_)
        loglik -= 0.5 * float(np.einsum("ij,jk,ik->", X, Wi, X))
        S = len(counts)
        mu = Ey.mean(axis=0)
        between = Eyy / S - np.outer(mu, mu)
        # E[(x - y)(x - y)^T] summed over vectors.
        sxx = X.T @ X
        cross = sums.T @ Ey
        within = (sxx - cross - cross.T + _weighted_eyy(counts, Ey, Bi, Wi)) / X.shape[0]
        self.mean_ = mu
        self.between_ = _shrink(0.5 * (between + between.T), self.shrinkage)
        self.within_ = _shrink(0.5 * (within + within.T), self.shrinkage)
        return loglik / X.shape[0]

    @staticmethod
    def _class_loglik_const(n: int, cov: np.ndarray, Bi: np.ndarray, Wi: np.ndarray) -> float:
        D = cov.shape[0]
        return float(-0.5 * n * D * _LOG_2PI + 0.5 * n * np.linalg.slogdet(Wi)[1]
                     + 0.5 * np.linalg.slogdet(Bi)[1] + 0.5 * np.linalg.slogdet(cov)[1])

    def _loaded(self) -> None:
        # Simultaneous diagonalisation: V^T W V = I, V^T B V = diag(psi).
        Wi = _inv_sqrt(self.within_)
        vals, vecs = np.linalg.eigh(Wi.T @ self.between_ @ Wi)
        self.transform_ = Wi @ vecs
        self.psi_ = np.maximum(vals, 0.0)

    @property
    def dim(self) -> int:
        return self.mean_.shape[0]

    def project(self, X: Any) -> np.ndarray:
        """Vectors in the diagonalising basis (centred)."""
        X = _check_X(X, dim=self.dim)
        return (X - self.mean_) @ self.transform_

    def score(self, enroll: Any, test: Any, n_enroll: Any = None) -> np.ndarray:
        """Log-likelihood ratios (M, N) of every model against every test vector.

        Parameters
        ----------
        enroll : array (M, dim)
            One vector per model: the *mean* of its enrolment vectors.
        test : array (N, dim)
        n_enroll : int or array (M,), optional
            How many vectors each model's mean averages (1 by default). The LLR is that of
            the model's ``n`` vectors and the test vector coming from one speaker, versus two.
        """
        E = self.project(enroll)
        Tt = self.project(test)
        M = E.shape[0]
        n = np.ones(M) if n_enroll is None else np.broadcast_to(np.asarray(n_enroll, dtype=np.float64), (M,))
        if np.any(n < 1):
            raise VerificationError("n_enroll must be >= 1")
        psi = self.psi_[None, :]
        gain = n[:, None] * psi / (n[:, None] * psi + 1.0)          # posterior mean factor
        mean = gain * E                                               # (M, d)
        var = 1.0 + psi / (n[:, None] * psi + 1.0)                   # predictive variance (M, d)
        var0 = 1.0 + self.psi_                                        # (d,)
        # sum_d [log N(t; mean, var) - log N(t; 0, var0)], expanded for all pairs.
        inv = 1.0 / var
        quad = ((Tt * Tt) @ inv.T).T - 2.0 * (mean * inv) @ Tt.T + ((mean * mean) * inv).sum(axis=1)[:, None]
        quad0 = ((Tt * Tt) / var0).sum(axis=1)[None, :]
        logdet = np.log(var).sum(axis=1)[:, None] - np.log(var0).sum()
        return -0.5 * (quad - quad0 + logdet)

    def score_trials(self, enroll: Any, test: Any, n_enroll: Any = None) -> np.ndarray:
        """LLRs of paired rows: ``enroll[i]`` against ``test[i]``."""
        E = _check_X(enroll, "enroll", self.dim)
        Tt = _check_X(test, "test", self.dim)
        if E.shape[0] != Tt.shape[0]:
            raise VerificationError("enroll and test must have as many rows")
        n = np.ones(E.shape[0]) if n_enroll is None else np.broadcast_to(np.asarray(n_enroll, float), (E.shape[0],))
        out = np.empty(E.shape[0])
        for value in np.unique(n):
            idx = np.flatnonzero(n == value)
            full = self.score(E[idx], Tt[idx], value)
            out[idx] = np.diagonal(full)
        return out


def _weighted_eyy(counts: np.ndarray, Ey: np.ndarray, Bi: np.ndarray, Wi: np.ndarray) -> np.ndarray:
    """``sum_s n_s E[y_s y_s^T]`` (the within-scatter's last term)."""
    out = np.zeros((Ey.shape[1], Ey.shape[1]))
    for n in np.unique(counts):
        idx = np.flatnonzero(counts == n)
        cov = np.linalg.inv(Bi + n * Wi)
        out += n * (len(idx) * cov + Ey[idx].T @ Ey[idx])
    return out


def cosine_scores(enroll: Any, test: Any) -> np.ndarray:
    """Cosine similarity (M, N) of every enrolment vector with every test vector."""
    E = _check_X(enroll, "enroll")
    Tt = _check_X(test, "test", E.shape[1])
    E = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-300)
    Tt = Tt / np.maximum(np.linalg.norm(Tt, axis=1, keepdims=True), 1e-300)
    return E @ Tt.T


_KINDS: dict[str, type] = {"Whitening": Whitening, "LengthNorm": LengthNorm, "LDA": LDA, "WCCN": WCCN,
                           "PLDA": PLDA}


class Chain:
    """Transforms applied in turn (e.g. whitening, length norm, LDA, length norm), with an
    optional final :class:`PLDA`, saved together in one file."""

    def __init__(self, steps: Sequence[Any]):
        self.steps = list(steps)

    def fit(self, X: Any, y: Any = None) -> "Chain":
        X = _check_X(X)
        for step in self.steps:
            step.fit(X, y)
            if not isinstance(step, PLDA):
                X = step.transform(X)
        return self

    def transform(self, X: Any) -> np.ndarray:
        for step in self.steps:
            if not isinstance(step, PLDA):
                X = step.transform(X)
        return np.asarray(X, dtype=np.float64)

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        return self.fit(X, y).transform(X)

    @property
    def plda(self) -> PLDA | None:
        return self.steps[-1] if self.steps and isinstance(self.steps[-1], PLDA) else None

    def save(self, path: str | Path) -> None:
        arrays: dict[str, np.ndarray] = {}
        steps = []
        for i, step in enumerate(self.steps):
            a, params = step.get_state()
            arrays.update({f"{i}_{k}": v for k, v in a.items()})
            steps.append({"kind": type(step).__name__, "params": params})
        save_model_file(path, BACKEND_FORMAT, BACKEND_VERSION, arrays, {"steps": steps})

    @classmethod
    def load(cls, path: str | Path) -> "Chain":
        arrays, meta, _ = load_model_file(path, BACKEND_FORMAT, (BACKEND_VERSION,))
        steps = []
        try:
            for i, spec in enumerate(meta["steps"]):
                kind = _KINDS[spec["kind"]]
                prefix = f"{i}_"
                steps.append(kind.from_state({k[len(prefix):]: v for k, v in arrays.items()
                                              if k.startswith(prefix)}, dict(spec.get("params") or {})))
        except (KeyError, TypeError, ValueError, np.linalg.LinAlgError) as exc:
            raise ModelFileError(f"{path}: invalid back-end file ({exc})") from exc
        return cls(steps)
