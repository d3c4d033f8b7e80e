"""Linear calibration and fusion of verification scores (prior-weighted logistic regression).

As in the BOSARIS toolkit (Brümmer & de Villiers 2011): the calibrated log-likelihood ratio
of a trial is ``llr = w^T s + b`` for its scores ``s`` from one system (calibration) or from
several (fusion). ``w`` and ``b`` minimise the prior-weighted cross-entropy

    P/N_tar   * sum_tar log(1 + exp(-(llr + logit P)))
  + (1-P)/N_non * sum_non log(1 + exp(llr + logit P))

for a training prior ``P`` (``p_target``): targets and non-targets weigh ``P`` and ``1 - P``
in total whatever their counts. It is the logistic regression of the labels on ``s`` with
those sample weights and intercept ``b + logit P``; it is solved here by Newton's method
(the problem is convex and small), optionally with an L2 penalty on ``w``. The result
minimises ``Cllr`` at that prior, so that thresholding the LLRs at the Bayes threshold gives
an actual DCF close to the minimum DCF.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from speakergmm.io import ModelFileError, load_model_file, save_model_file
from speakergmm.verification.sources import VerificationError

__all__ = ["LinearCalibration", "fuse", "CALIBRATION_FORMAT"]

CALIBRATION_FORMAT = "speakergmm.LinearCalibration"
CALIBRATION_VERSION = 1


def _as_columns(scores: Any, name: str = "scores") -> np.ndarray:
    S = np.asarray(scores, dtype=np.float64)
    if S.ndim == 1:
        S = S[:, None]
    if S.ndim != 2 or S.shape[0] == 0:
        raise VerificationError(f"{name} must be (n_trials,) or (n_trials, n_systems); got shape {S.shape}")
    if not np.all(np.isfinite(S)):
        raise VerificationError(f"{name} contains NaN or infinity")
    return S


class LinearCalibration:
    """Affine map of one or more systems' scores to log-likelihood ratios.

    Parameters
    ----------
    p_target : float
        Training prior ``P`` of the weighted cross-entropy (BOSARIS' default is 0.5;
        choose the operating point's effective prior to be calibrated there best).
    reg : float
        L2 penalty ``reg/2 * |w|^2`` (0: none).
    max_iter, tol : Newton's method controls.

    Attributes
    ----------
    coef_ : array (n_systems,)
    intercept_ : float
        ``b`` (the LLR offset; the logistic intercept is ``b + logit P``).
    """

    def __init__(self, p_target: float = 0.5, reg: float = 0.0, max_iter: int = 100, tol: float = 1e-10):
        if not 0.0 < float(p_target) < 1.0:
            raise ValueError(f"p_target must be in (0, 1); got {p_target}")
        if float(reg) < 0:
            raise ValueError(f"reg must be >= 0; got {reg}")
        self.p_target = float(p_target)
        self.reg = float(reg)
        self.max_iter = int(max_iter)
        self.tol = float(tol)

    def fit(self, scores: Any, labels: Any) -> "LinearCalibration":
        """Fit on scores (n_trials,) or (n_trials, n_systems) and boolean target labels."""
        S = _as_columns(scores)
        y = np.asarray(labels).astype(bool)
        if y.shape != (S.shape[0],):
            raise VerificationError(f"labels must have shape ({S.shape[0]},); got {y.shape}")
        n_tar, n_non = int(y.sum()), int((~y).sum())
        if n_tar == 0 or n_non == 0:
            raise VerificationError(f"calibration needs target and non-target trials ({n_tar} and {n_non} given)")
        P = self.p_target
        offset = math.log(P / (1.0 - P))
        weight = np.where(y, P / n_tar, (1.0 - P) / n_non)
        # Standardise columns for a well-conditioned Newton iteration; undone at the end.
        centre = S.mean(axis=0)
        scale = S.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        Z = np.hstack([(S - centre) / scale, np.ones((S.shape[0], 1))])
        theta = np.zeros(Z.shape[1])
        t = y.astype(np.float64)

        def loss(theta: np.ndarray) -> float:
            eta = Z @ theta + offset
            # log(1 + exp(-eta)) for targets, log(1 + exp(eta)) for non-targets.
            value = weight @ np.logaddexp(0.0, np.where(y, -eta, eta))
            return float(value + 0.5 * self.reg * np.sum((theta[:-1] / scale) ** 2))

        current = loss(theta)
        for _ in range(self.max_iter):
            eta = Z @ theta + offset
            p = 0.5 * (1.0 + np.tanh(0.5 * eta))  # logistic, without overflow
            grad = Z.T @ (weight * (p - t)) + self._penalty_grad(theta, scale)
            hess = (Z * (weight * p * (1.0 - p))[:, None]).T @ Z + self._penalty_hess(scale, Z.shape[1])
            # A tiny Levenberg term keeps the solve defined when the classes are (almost)
            # separable; the line search keeps every step a descent step.
            ridge = 1e-12 * max(float(np.trace(hess)), 1e-300)
            step = np.linalg.solve(hess + ridge * np.eye(len(theta)), grad)
            size = 1.0
            while True:
                candidate = theta - size * step
                value = loss(candidate)
                if value <= current or size < 1e-8:
                    break
                size *= 0.5
            if value > current:
                break
            theta, previous, current = candidate, current, value
            if np.max(np.abs(size * step)) < self.tol or previous - current < 1e-15 * max(abs(previous), 1e-300):
                break
        w = theta[:-1] / scale
        self.coef_ = w
        self.intercept_ = float(theta[-1] - w @ centre)
        return self

    def _penalty_grad(self, theta: np.ndarray, scale: np.ndarray) -> np.ndarray:
        g = np.zeros_like(theta)
        # reg/2 |w|^2 with w = theta_w / scale.
        g[:-1] = self.reg * theta[:-1] / scale ** 2
        return g

    def _penalty_hess(self, scale: np.ndarray, n: int) -> np.ndarray:
        H = np.zeros((n, n))
        H[np.arange(n - 1), np.arange(n - 1)] = self.reg / scale ** 2
        return H

    def transform(self, scores: Any) -> np.ndarray:
        """Calibrated LLRs (n_trials,)."""
        if not hasattr(self, "coef_"):
            raise VerificationError("the calibration is not fitted")
        S = _as_columns(scores)
        if S.shape[1] != self.coef_.shape[0]:
            raise VerificationError(f"{S.shape[1]} score columns; the calibration was fitted on {self.coef_.shape[0]}")
        return S @ self.coef_ + self.intercept_

    def fit_transform(self, scores: Any, labels: Any) -> np.ndarray:
        return self.fit(scores, labels).transform(scores)

    def objective(self, scores: Any, labels: Any) -> float:
        """Prior-weighted cross-entropy (nats) of the calibrated scores."""
        llr = self.transform(scores)
        y = np.asarray(labels).astype(bool)
        offset = math.log(self.p_target / (1.0 - self.p_target))
        return float(self.p_target * np.mean(np.logaddexp(0.0, -(llr[y] + offset)))
                     + (1.0 - self.p_target) * np.mean(np.logaddexp(0.0, llr[~y] + offset)))

    def save(self, path: str | Path) -> None:
        if not hasattr(self, "coef_"):
            raise VerificationError("the calibration is not fitted")
        save_model_file(path, CALIBRATION_FORMAT, CALIBRATION_VERSION,
                        {"coef": self.coef_, "intercept": np.array(self.intercept_)},
                        {"p_target": self.p_target, "reg": self.reg})

    @classmethod
    def load(cls, path: str | Path) -> "LinearCalibration":
        arrays, meta, _ = load_model_file(path, CALIBRATION_FORMAT, (CALIBRATION_VERSION,),
                                          required=("coef", "intercept"))
        try:
            cal = cls(p_target=float(meta["p_target"]), reg=float(meta.get("reg", 0.0)))
            cal.coef_ = np.asarray(arrays["coef"], dtype=np.float64).reshape(-1)
            cal.intercept_ = float(arrays["intercept"])
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelFileError(f"{path}: invalid calibration ({exc})") from exc
        return cal


def fuse(train_scores: Sequence[Any], train_labels: Any, scores: Sequence[Any] | None = None,
         p_target: float = 0.5, reg: float = 0.0) -> tuple[np.ndarray, LinearCalibration]:
    """Fuse several systems' scores by linear logistic regression.

    ``train_scores`` is a list of per-system score arrays of the training trials; the
    fused LLRs of ``scores`` (same systems, other trials; the training trials by default)
    are returned with the fitted :class:`LinearCalibration`.
    """
    columns = np.column_stack([np.asarray(s, dtype=np.float64) for s in train_scores])
    cal = LinearCalibration(p_target=p_target, reg=reg).fit(columns, train_labels)
    target = columns if scores is None else np.column_stack([np.asarray(s, dtype=np.float64) for s in scores])
    return cal.transform(target), cal
