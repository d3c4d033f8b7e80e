"""Evaluation metrics for speaker verification and closed-set identification.

Conventions
-----------
* A trial is *accepted* when its score is ``>= threshold``. A target trial below the
  threshold is a miss; a non-target trial at or above it is a false alarm. All scores equal
  to a threshold are therefore decided together (ties never split).
* Error rates are fractions in ``[0, 1]``, not percentages.
* Detection cost functions (DCF) follow NIST: ``DCF = c_miss * p_target * P_miss +
  c_fa * (1 - p_target) * P_fa``, normalised by ``min(c_miss * p_target, c_fa * (1 - p_target))``
  (the cost of the better of "accept all" and "reject all"), so 1.0 means "no better than
  a fixed decision".
* The equal error rate is the **ROC convex hull EER** (ROCCH-EER, as computed by the BOSARIS
  toolkit and pyllr): the point where the convex hull of the empirical (P_fa, P_miss)
  operating points crosses ``P_miss == P_fa``. It equals the largest, over all target
  priors, of the minimum Bayes error rate, and never exceeds the best error rate that a
  single threshold achieves (:func:`eer_with_threshold` also returns that threshold).
* Cllr is in bits; 1.0 is the cost of a system that always outputs ``llr = 0``.

Everything here is exact and ``O(n log n)`` in the number of trials (sorting).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "DCFOperatingPoint",
    "OPERATING_POINTS",
    "DEFAULT_OPERATING_POINT",
    "det_curve",
    "rocch",
    "eer",
    "eer_with_threshold",
    "kaldi_eer",
    "named_operating_point",
    "bayes_threshold",
    "detection_cost",
    "min_dcf",
    "actual_dcf",
    "cllr",
    "min_cllr",
    "pav_llrs",
    "identification_accuracy",
    "confusion_matrix",
    "identification_confusion",
    "evaluate_scores",
]


@dataclass(frozen=True)
class DCFOperatingPoint:
    """Costs and prior of a detection cost function.

    Attributes
    ----------
    p_target : float
        Prior probability of a target trial, in ``(0, 1)``.
    c_miss, c_fa : float
        Costs of a miss and of a false alarm, ``> 0``.
    """

    p_target: float
    c_miss: float = 1.0
    c_fa: float = 1.0

    def __post_init__(self) -> None:
        if not (0.0 < float(self.p_target) < 1.0):
            raise ValueError(f"p_target must be in (0, 1), got {self.p_target!r}")
        if not (float(self.c_miss) > 0.0 and math.isfinite(self.c_miss)):
            raise ValueError(f"c_miss must be a positive finite number, got {self.c_miss!r}")
        if not (float(self.c_fa) > 0.0 and math.isfinite(self.c_fa)):
            raise ValueError(f"c_fa must be a positive finite number, got {self.c_fa!r}")

    @property
    def normalizer(self) -> float:
        """Cost of the best fixed decision: ``min(c_miss * p, c_fa * (1 - p))``."""
        return min(self.c_miss * self.p_target, self.c_fa * (1.0 - self.p_target))

    @property
    def effective_prior(self) -> float:
        """The prior with unit costs that gives the same Bayes decisions."""
        a = self.c_miss * self.p_target
        return a / (a + self.c_fa * (1.0 - self.p_target))

    @property
    def bayes_threshold(self) -> float:
        """Optimal threshold for calibrated natural-log likelihood-ratio scores."""
        return bayes_threshold(self.p_target, self.c_miss, self.c_fa)


#: Operating points of the NIST speaker recognition evaluations and of VoxSRC.
#: ``sre16`` is the first of SRE16's two points (p_target 0.01; its primary cost also
#: averages in p_target 0.005, available as ``sre16_0.005``); ``voxsrc`` is the VoxSRC
#: challenges' minDCF point (p_target 0.05).
OPERATING_POINTS: dict[str, DCFOperatingPoint] = {
    "sre08": DCFOperatingPoint(p_target=0.01, c_miss=10.0, c_fa=1.0),
    "sre10": DCFOperatingPoint(p_target=0.001, c_miss=1.0, c_fa=1.0),
    "sre16": DCFOperatingPoint(p_target=0.01, c_miss=1.0, c_fa=1.0),
    "sre16_0.005": DCFOperatingPoint(p_target=0.005, c_miss=1.0, c_fa=1.0),
    "voxsrc": DCFOperatingPoint(p_target=0.05, c_miss=1.0, c_fa=1.0),
}


def named_operating_point(name: str) -> DCFOperatingPoint:
    """The named preset of :data:`OPERATING_POINTS` (case-insensitive), or a ValueError
    listing them."""
    key = str(name).lower()
    if key not in OPERATING_POINTS:
        raise ValueError(f"unknown operating point {name!r}; presets: {', '.join(OPERATING_POINTS)}")
    return OPERATING_POINTS[key]

#: The operating point reported as ``min_dcf`` by :func:`evaluate_scores` by default.
DEFAULT_OPERATING_POINT = "sre08"


# ----------------------------------------------------------------------------- validation


def _scores(values: ArrayLike, name: str) -> np.ndarray:
    """A 1-D float64 array of finite scores, or a ValueError naming ``name``."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of numbers ({exc})") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of scores, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: need at least one score")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} has {int(bad.sum())} non-finite score(s) (NaN or inf), "
            f"the first at index {first}: {arr[first]!r}"
        )
    return arr


def _operating_point(
    p_target: float, c_miss: float, c_fa: float,
    operating_point: DCFOperatingPoint | str | None,
) -> DCFOperatingPoint:
    if operating_point is None:
        return DCFOperatingPoint(float(p_target), float(c_miss), float(c_fa))
    if isinstance(operating_point, DCFOperatingPoint):
        return operating_point
    try:
        return OPERATING_POINTS[operating_point]
    except KeyError:
        raise ValueError(
            f"unknown operating point {operating_point!r}; known: {', '.join(OPERATING_POINTS)}"
        ) from None


# ------------------------------------------------------------------------ DET and ROCCH


def _grouped_counts(tar: np.ndarray, non: np.ndarray):
    """Unique scores (ascending) and the number of target / non-target trials at each."""
    tar_sorted = np.sort(tar)
    non_sorted = np.sort(non)
    thresholds = np.unique(np.concatenate([tar_sorted, non_sorted]))
    # Number of target / non-target scores strictly below each threshold.
    tar_below = np.searchsorted(tar_sorted, thresholds, side="left")
    non_below = np.searchsorted(non_sorted, thresholds, side="left")
    return thresholds, tar_below, non_below


def det_curve(
    target_scores: ArrayLike, nontarget_scores: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every distinct operating point of a detector: miss and false-alarm rates.

    Parameters
    ----------
    target_scores : array_like, shape (n_target,)
    nontarget_scores : array_like, shape (n_nontarget,)

    Returns
    -------
    p_miss : ndarray, shape (n_points,)
        Fraction of target scores ``< thresholds[i]``; non-decreasing, from 0 to 1.
    p_fa : ndarray, shape (n_points,)
        Fraction of non-target scores ``>= thresholds[i]``; non-increasing, from 1 to 0.
    thresholds : ndarray, shape (n_points,)
        The distinct scores in ascending order followed by ``+inf`` (reject everything);
        ``n_points = n_distinct_scores + 1``.
    """
    tar = _scores(target_scores, "target_scores")
    non = _scores(nontarget_scores, "nontarget_scores")
    thresholds, tar_below, non_below = _grouped_counts(tar, non)
    p_miss = np.append(tar_below, tar.size) / tar.size
    p_fa = (non.size - np.append(non_below, non.size)) / non.size
    return p_miss, p_fa, np.append(thresholds, np.inf)


def _pav_blocks(tar_counts: np.ndarray, non_counts: np.ndarray) -> np.ndarray:
    """Pool-adjacent-violators on groups of trials sorted by score.

    Fits the non-decreasing step function of the target fraction over the groups that
    is closest (in weighted least squares, hence in every proper scoring rule) to the
    observed fractions ``tar / (tar + non)``. Adjacent blocks are merged while the
    left one's target fraction is ``>=`` the right one's, so the returned blocks have
    strictly increasing fractions. Comparisons use integer cross-multiplication, so
    they are exact.

    Returns
    -------
    starts : ndarray of int, shape (n_blocks + 1,)
        Group index where each block starts, then ``n_groups``.
    """
    n_groups = tar_counts.size
    # One stack entry per block: [start, targets, total]; Python ints keep it exact.
    block_start: list[int] = []
    block_tar: list[int] = []
    block_all: list[int] = []
    for g, (t, n) in enumerate(zip(tar_counts.tolist(), non_counts.tolist())):
        start, bt, ba = g, t, t + n
        while block_start and block_tar[-1] * ba >= bt * block_all[-1]:
            start = block_start.pop()
            bt += block_tar.pop()
            ba += block_all.pop()
        block_start.append(start)
        block_tar.append(bt)
        block_all.append(ba)
    return np.array(block_start + [n_groups], dtype=np.int64)


def _group_counts_per_score(tar: np.ndarray, non: np.ndarray):
    thresholds, tar_below, non_below = _grouped_counts(tar, non)
    tar_counts = np.diff(np.append(tar_below, tar.size))
    non_counts = np.diff(np.append(non_below, non.size))
    return thresholds, tar_counts, non_counts


def rocch(
    target_scores: ArrayLike, nontarget_scores: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices of the ROC convex hull, in DET coordinates.

    Returns
    -------
    p_miss, p_fa, thresholds : ndarray, shape (n_vertices,)
        The operating points of :func:`det_curve` that are vertices of the lower-left
        convex hull of all operating points (collinear points removed), ordered by
        increasing threshold; the first is "accept all" (``p_miss = 0, p_fa = 1``) and the
        last "reject all" (``p_miss = 1, p_fa = 0``, threshold ``+inf``).
    """
    tar = _scores(target_scores, "target_scores")
    non = _scores(nontarget_scores, "nontarget_scores")
    return _rocch(tar, non)


def _rocch(tar: np.ndarray, non: np.ndarray):
    thresholds, tar_counts, non_counts = _group_counts_per_score(tar, non)
    starts = _pav_blocks(tar_counts, non_counts)  # block boundaries are hull vertices
    cum_tar = np.concatenate([[0], np.cumsum(tar_counts)])
    cum_non = np.concatenate([[0], np.cumsum(non_counts)])
    p_miss = cum_tar[starts] / tar.size
    p_fa = (non.size - cum_non[starts]) / non.size
    return p_miss, p_fa, np.append(thresholds, np.inf)[starts]


def _eer_from_hull(p_miss: np.ndarray, p_fa: np.ndarray) -> float:
    diff = p_miss - p_fa  # -1 at the first vertex, +1 at the last, increasing in between
    j = int(np.argmax(diff >= 0.0))
    if diff[j] == 0.0:
        return float(p_miss[j])
    i = j - 1
    # Intersection of the hull segment (i, j) with the line p_miss == p_fa.
    alpha = -diff[i] / (diff[j] - diff[i])
    return float(p_miss[i] + alpha * (p_miss[j] - p_miss[i]))


def eer(target_scores: ArrayLike, nontarget_scores: ArrayLike) -> float:
    """Equal error rate (fraction) on the ROC convex hull (ROCCH-EER, as in BOSARIS).

    It is the error rate where the convex hull of the operating points of
    :func:`det_curve` crosses ``P_miss == P_fa``; equivalently
    ``max over priors p of min over thresholds of p * P_miss + (1 - p) * P_fa``.
    """
    tar = _scores(target_scores, "target_scores")
    non = _scores(nontarget_scores, "nontarget_scores")
    p_miss, p_fa, _ = _rocch(tar, non)
    return _eer_from_hull(p_miss, p_fa)


def eer_with_threshold(
    target_scores: ArrayLike, nontarget_scores: ArrayLike
) -> tuple[float, float]:
    """The ROCCH equal error rate and a threshold that (nearly) attains it.

    Returns
    -------
    eer : float
        As :func:`eer`.
    threshold : float
        The threshold whose actual operating point has the smallest
        ``max(P_miss, P_fa)`` (ties: the smaller ``|P_miss - P_fa|``, then the lower
        threshold). With a single threshold the error rates at it are ``>= eer``; they
        equal it when the hull crosses the diagonal at an operating point. Finite unless
        rejecting every trial is best (only possible when all target scores are below all
        non-target ones).
    """
    tar = _scores(target_scores, "target_scores")
    non = _scores(nontarget_scores, "nontarget_scores")
    p_miss, p_fa, _ = _rocch(tar, non)
    value = _eer_from_hull(p_miss, p_fa)
    d_miss, d_fa, thresholds = det_curve(tar, non)
    worst = np.maximum(d_miss, d_fa)
    candidates = np.flatnonzero(worst == worst.min())
    best = candidates[np.argmin(np.abs(d_miss - d_fa)[candidates])]
    return value, float(thresholds[best])


def kaldi_eer(target_scores: ArrayLike, nontarget_scores: ArrayLike) -> tuple[float, float]:
    """EER as Kaldi's ``compute-eer`` computes it, and its threshold.

    With both score lists sorted ascending, the ``i``-th lowest target score is the first
    threshold (in increasing ``i``) at which the non-target score at the matching position
    ``n_non - 1 - floor(n_non * i / n_tar)`` falls below it; the EER is ``i / n_tar``. It
    is the error rate of one actual threshold, so it is at least the ROCCH EER
    (:func:`eer`) up to the quantisation of ``1 / n_tar``; they agree closely on large
    trial lists.
    """
    tar = np.sort(_scores(target_scores, "target_scores"))
    non = np.sort(_scores(nontarget_scores, "nontarget_scores"))
    n_tar, n_non = tar.size, non.size
    positions = np.arange(n_tar)
    non_pos = n_non - 1 - np.floor(n_non * positions / n_tar).astype(np.int64)
    non_pos = np.maximum(non_pos, 0)
    hits = np.flatnonzero(non[non_pos] < tar)
    if hits.size == 0:
        return 1.0, float(tar[-1])
    i = int(hits[0])
    return i / n_tar, float(tar[i])


# ---------------------------------------------------------------------------- DCF


def bayes_threshold(p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """Bayes decision threshold for calibrated log-likelihood-ratio scores.

    ``-log(p_target * c_miss / ((1 - p_target) * c_fa))``: accepting the trials with
    ``llr >= threshold`` minimises the expected cost when the scores are true natural-log
    likelihood ratios.
    """
    op = DCFOperatingPoint(float(p_target), float(c_miss), float(c_fa))
    return -math.log(op.p_target * op.c_miss / ((1.0 - op.p_target) * op.c_fa))


def detection_cost(
    p_miss: ArrayLike, p_fa: ArrayLike, p_target: float = 0.01, c_miss: float = 1.0,
    c_fa: float = 1.0, normalize: bool = True,
) -> np.ndarray:
    """The DCF of given miss / false-alarm rates (elementwise)."""
    op = DCFOperatingPoint(float(p_target), float(c_miss), float(c_fa))
    cost = (op.c_miss * op.p_target * np.asarray(p_miss, dtype=np.float64)
            + op.c_fa * (1.0 - op.p_target) * np.asarray(p_fa, dtype=np.float64))
    return cost / op.normalizer if normalize else cost


def min_dcf(
    target_scores: ArrayLike,
    nontarget_scores: ArrayLike,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
    normalize: bool = True,
    *,
    operating_point: DCFOperatingPoint | str | None = None,
) -> tuple[float, float]:
    """Minimum detection cost over all thresholds.

    Parameters
    ----------
    target_scores, nontarget_scores : array_like, 1-D
    p_target, c_miss, c_fa : float
        The cost model (ignored when ``operating_point`` is given).
    normalize : bool
        Divide by ``min(c_miss * p_target, c_fa * (1 - p_target))`` (NIST normalisation).
    operating_point : DCFOperatingPoint or str, optional
        An operating point or the name of one in :data:`OPERATING_POINTS`
        (``"sre08"``, ``"sre10"``).

    Returns
    -------
    min_dcf : float
    threshold : float
        The lowest threshold attaining it (accept ``score >= threshold``); ``+inf`` when
        rejecting every trial is optimal.
    """
    op = _operating_point(p_target, c_miss, c_fa, operating_point)
    p_miss, p_fa, thresholds = det_curve(target_scores, nontarget_scores)
    cost = detection_cost(p_miss, p_fa, op.p_target, op.c_miss, op.c_fa, normalize)
    best = int(np.argmin(cost))
    return float(cost[best]), float(thresholds[best])


def actual_dcf(
    target_scores: ArrayLike,
    nontarget_scores: ArrayLike,
    threshold: float | None = None,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
    normalize: bool = True,
    *,
    operating_point: DCFOperatingPoint | str | None = None,
) -> float:
    """Detection cost at a fixed threshold (accept ``score >= threshold``).

    ``threshold=None`` uses the Bayes threshold of the operating point, which is right
    for calibrated log-likelihood-ratio scores (:func:`bayes_threshold`).
    """
    op = _operating_point(p_target, c_miss, c_fa, operating_point)
    tar = _scores(target_scores, "target_scores")
    non = _scores(nontarget_scores, "nontarget_scores")
    if threshold is None:
        threshold = op.bayes_threshold
    elif not isinstance(threshold, (int, float, np.number)) or math.isnan(threshold):
        raise ValueError(f"threshold must be a number, got {threshold!r}")
    p_miss = np.count_nonzero(tar < threshold) / tar.size
    p_fa = np.count_nonzero(non >= threshold) / non.size
    return float(detection_cost(p_miss, p_fa, op.p_target, op.c_miss, op.c_fa, normalize))


# ---------------------------------------------------------------------------- Cllr

_LN2 = math.log(2.0)


def cllr(target_llrs: ArrayLike, nontarget_llrs: ArrayLike) -> float:
    """Log-likelihood-ratio cost in bits (Brümmer & du Preez, 2006).

    ``(mean(log2(1 + exp(-llr_tar))) + mean(log2(1 + exp(llr_non)))) / 2`` for natural-log
    likelihood-ratio scores.
    """
    tar = _scores(target_llrs, "target_llrs")
    non = _scores(nontarget_llrs, "nontarget_llrs")
    return float((np.mean(np.logaddexp(0.0, -tar)) + np.mean(np.logaddexp(0.0, non)))
                 / (2.0 * _LN2))


def pav_llrs(
    target_scores: ArrayLike, nontarget_scores: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Optimally calibrated LLRs of the given trials (pool-adjacent-violators).

    The monotone (non-decreasing) transformation of the scores into log-likelihood ratios
    that minimises Cllr on these very trials: the isotonic fit of the target posterior
    (equal scores always share one value), converted to LLRs by subtracting the
    empirical prior log-odds ``log(n_target / n_nontarget)``. Values can be ``±inf``.

    Returns
    -------
    target_llrs : ndarray, shape (n_target,)
    nontarget_llrs : ndarray, shape (n_nontarget,)
    """
    tar = _scores(target_scores, "target_scores")
    non = _scores(nontarget_scores, "nontarget_scores")
    thresholds, starts, _, _, llr = _pav_fit(tar, non)
    group_llr = np.repeat(llr, np.diff(starts))
    return (group_llr[np.searchsorted(thresholds, tar)],
            group_llr[np.searchsorted(thresholds, non)])


def _pav_fit(tar: np.ndarray, non: np.ndarray):
    """PAV fit: unique scores, block starts (over them), per-block target and non-target
    counts and per-block LLR."""
    thresholds, tar_counts, non_counts = _group_counts_per_score(tar, non)
    starts = _pav_blocks(tar_counts, non_counts)
    cum_tar = np.concatenate([[0], np.cumsum(tar_counts)])
    cum_non = np.concatenate([[0], np.cumsum(non_counts)])
    blk_tar = np.diff(cum_tar[starts]).astype(np.float64)
    blk_non = np.diff(cum_non[starts]).astype(np.float64)
    prior_logodds = math.log(tar.size / non.size)
    with np.errstate(divide="ignore"):
        llr = np.log(blk_tar) - np.log(blk_non) - prior_logodds
    return thresholds, starts, blk_tar, blk_non, llr


def min_cllr(target_scores: ArrayLike, nontarget_scores: ArrayLike) -> float:
    """Cllr (bits) after optimal monotone calibration (PAV) on the same trials.

    The discrimination part of Cllr: ``min_cllr <= cllr`` for any scores and
    ``min_cllr <= 1``; it is 0 for perfectly separated scores.
    """
    tar = _scores(target_scores, "target_scores")
    non = _scores(nontarget_scores, "nontarget_scores")
    _, _, blk_tar, blk_non, llr = _pav_fit(tar, non)
    # Blocks without targets have llr = -inf and contribute 0 to the target term (and
    # vice versa); mask them so 0 * inf does not turn into NaN.
    with np.errstate(over="ignore", invalid="ignore"):
        tar_term = np.where(blk_tar > 0, blk_tar * np.logaddexp(0.0, -llr), 0.0).sum()
        non_term = np.where(blk_non > 0, blk_non * np.logaddexp(0.0, llr), 0.0).sum()
    return float((tar_term / tar.size + non_term / non.size) / (2.0 * _LN2))


# ----------------------------------------------------------------- identification


def _id_inputs(score_matrix: ArrayLike, true_model_index: ArrayLike):
    scores = np.asarray(score_matrix, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(
            f"score_matrix must be a non-empty 2-D array (n_test, n_models), got shape "
            f"{scores.shape}"
        )
    if not np.isfinite(scores).all():
        raise ValueError("score_matrix has non-finite scores (NaN or inf)")
    truth = np.asarray(true_model_index)
    if truth.shape != (scores.shape[0],):
        raise ValueError(
            f"true_model_index must have shape ({scores.shape[0]},) to match score_matrix, "
            f"got {truth.shape}"
        )
    if truth.dtype.kind not in "iu":
        raise ValueError(f"true_model_index must hold integers, got dtype {truth.dtype}")
    if truth.size and (truth.min() < 0 or truth.max() >= scores.shape[1]):
        raise ValueError(
            f"true_model_index values must be in [0, {scores.shape[1]}), got "
            f"[{truth.min()}, {truth.max()}]"
        )
    return scores, truth.astype(np.int64)


def identification_accuracy(score_matrix: ArrayLike, true_model_index: ArrayLike) -> float:
    """Closed-set identification accuracy: the fraction of tests whose best model is right.

    Parameters
    ----------
    score_matrix : array_like, shape (n_test, n_models)
        Higher is better. Ties go to the lowest model index (``argmax``).
    true_model_index : array_like of int, shape (n_test,)
    """
    scores, truth = _id_inputs(score_matrix, true_model_index)
    return float(np.mean(np.argmax(scores, axis=1) == truth))


def confusion_matrix(
    true_index: ArrayLike, predicted_index: ArrayLike, n_classes: int | None = None
) -> np.ndarray:
    """Counts ``C[i, j]`` of items of class ``i`` predicted as class ``j``.

    ``n_classes`` defaults to ``1 + max`` of both index arrays.
    """
    truth = np.asarray(true_index)
    pred = np.asarray(predicted_index)
    for name, arr in (("true_index", truth), ("predicted_index", pred)):
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise ValueError(f"{name} must be a 1-D integer array, got {arr.dtype} {arr.shape}")
        if arr.size and arr.min() < 0:
            raise ValueError(f"{name} has negative class indices")
    if truth.shape != pred.shape:
        raise ValueError(f"true_index {truth.shape} and predicted_index {pred.shape} differ in length")
    if n_classes is None:
        n_classes = int(max(truth.max(initial=-1), pred.max(initial=-1)) + 1)
    elif truth.size and max(truth.max(), pred.max()) >= n_classes:
        raise ValueError(f"class indices must be < n_classes={n_classes}")
    flat = truth.astype(np.int64) * n_classes + pred.astype(np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def identification_confusion(score_matrix: ArrayLike, true_model_index: ArrayLike) -> np.ndarray:
    """Confusion matrix (n_models, n_models) of closed-set identification by ``argmax``."""
    scores, truth = _id_inputs(score_matrix, true_model_index)
    return confusion_matrix(truth, np.argmax(scores, axis=1), n_classes=scores.shape[1])


# ------------------------------------------------------------------------- summary


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def evaluate_scores(
    target_scores: ArrayLike,
    nontarget_scores: ArrayLike,
    operating_points: Sequence[str] | Mapping[str, DCFOperatingPoint] = ("sre08", "sre10"),
) -> dict[str, Any]:
    """All verification metrics of a set of scores as a JSON-able dict.

    Keys
    ----
    ``n_target``, ``n_nontarget``; ``eer`` (ROCCH, fraction) and ``eer_threshold``
    (see :func:`eer_with_threshold`); ``eer_kaldi`` (:func:`kaldi_eer`); for each operating point ``NAME``:
    ``min_dcf_NAME``, ``min_dcf_threshold_NAME`` and ``actual_dcf_NAME`` (at the Bayes
    threshold, meaningful only for calibrated LLR scores); ``min_dcf`` and
    ``min_dcf_operating_point``: the first operating point's (``"sre08"`` by default:
    p_target=0.01, c_miss=10, c_fa=1); ``cllr`` and ``min_cllr`` (bits, treating the scores
    as natural-log LLRs). Thresholds that are infinite are reported as ``None``.
    """
    tar = _scores(target_scores, "target_scores")
    non = _scores(nontarget_scores, "nontarget_scores")
    if isinstance(operating_points, Mapping):
        points = dict(operating_points)
    else:
        if isinstance(operating_points, str):
            operating_points = (operating_points,)
        points = {name: _operating_point(0.5, 1, 1, name) for name in operating_points}
    if not points:
        raise ValueError("operating_points is empty")
    value, threshold = eer_with_threshold(tar, non)
    kaldi_value, _ = kaldi_eer(tar, non)
    result: dict[str, Any] = {
        "n_target": int(tar.size),
        "n_nontarget": int(non.size),
        "eer": value,
        "eer_threshold": _json_float(threshold),
        "eer_kaldi": kaldi_value,
    }
    for name, op in points.items():
        dcf, dcf_threshold = min_dcf(tar, non, operating_point=op)
        result[f"min_dcf_{name}"] = dcf
        result[f"min_dcf_threshold_{name}"] = _json_float(dcf_threshold)
        result[f"actual_dcf_{name}"] = actual_dcf(tar, non, operating_point=op)
    first = next(iter(points))
    result["min_dcf"] = result[f"min_dcf_{first}"]
    result["min_dcf_operating_point"] = first
    result["cllr"] = cllr(tar, non)
    result["min_cllr"] = min_cllr(tar, non)
    return result
