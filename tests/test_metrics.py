"""Tests of speakergmm.metrics against brute-force references and known values."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from speakergmm import metrics
from speakergmm.metrics import (
    OPERATING_POINTS,
    DCFOperatingPoint,
    actual_dcf,
    bayes_threshold,
    cllr,
    confusion_matrix,
    det_curve,
    eer,
    eer_with_threshold,
    evaluate_scores,
    identification_accuracy,
    identification_confusion,
    min_cllr,
    min_dcf,
    pav_llrs,
    rocch,
)

# Small integer-valued scores: many ties, which is where the subtle bugs live.
small_scores = st.lists(st.integers(min_value=-4, max_value=4), min_size=1, max_size=9)
# Scores on a 0.001 grid: scikit-learn's isotonic regression merges nearly equal scores.
grid_scores = st.lists(
    st.integers(min_value=-5000, max_value=5000).map(lambda i: i / 1000), min_size=1, max_size=30
)
float_scores = st.lists(
    st.floats(min_value=-50, max_value=50, allow_nan=False, allow_infinity=False),
    min_size=1, max_size=30,
)


# ------------------------------------------------------------------- references


def brute_det(tar, non):
    """Operating points at every distinct score and +inf, by counting."""
    thresholds = sorted(set(tar) | set(non)) + [math.inf]
    p_miss = [Fraction(sum(t < thr for t in tar), len(tar)) for thr in thresholds]
    p_fa = [Fraction(sum(n >= thr for n in non), len(non)) for thr in thresholds]
    return p_miss, p_fa, thresholds


def brute_rocch_eer(tar, non) -> Fraction:
    """max over priors of the minimum Bayes error rate, exactly (rational arithmetic).

    min_k (pi * Pmiss_k + (1 - pi) * Pfa_k) is concave and piecewise linear in pi, so its
    maximum is at pi = 0, pi = 1 or where two of the lines cross.
    """
    p_miss, p_fa, _ = brute_det(tar, non)
    points = list(zip(p_miss, p_fa))
    candidates = {Fraction(0), Fraction(1)}
    for i, (mi, fi) in enumerate(points):
        for mj, fj in points[i + 1:]:
            denom = (mi - fi) - (mj - fj)
            if denom != 0:
                pi = (fj - fi) / denom
                if 0 <= pi <= 1:
                    candidates.add(pi)
    return max(min(pi * m + (1 - pi) * f for m, f in points) for pi in candidates)


def lower_hull(points):
    """Lower-left convex hull (monotone chain) of (p_fa, p_miss) points, sorted by p_fa."""
    points = set(points)
    # Vertices: the Pareto-optimal points plus the two trivial ones ("accept all",
    # "reject all"), which bound the hull; sorted by p_fa, then decreasing p_miss.
    pts = {p for p in points
           if not any(q != p and q[0] <= p[0] and q[1] <= p[1] for q in points)}
    pts = sorted(pts | {(1, 0), (0, 1)}, key=lambda p: (p[0], -p[1]))
    hull = []
    for p in pts:
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) <= 0:
                hull.pop()
            else:
                break
        hull.append(p)
    return hull


def isotonic_min_cllr(tar, non) -> float:
    """min Cllr with scikit-learn's isotonic regression as the calibrator (test oracle)."""
    from sklearn.isotonic import IsotonicRegression

    scores = np.concatenate([tar, non])
    labels = np.concatenate([np.ones(len(tar)), np.zeros(len(non))])
    posterior = IsotonicRegression(increasing=True).fit(scores, labels).predict(scores)
    with np.errstate(divide="ignore"):
        llr = np.log(posterior) - np.log1p(-posterior) - math.log(len(tar) / len(non))
    t_llr, n_llr = llr[: len(tar)], llr[len(tar):]
    t_cost = np.where(np.isposinf(t_llr), 0.0, np.logaddexp(0, -t_llr))
    n_cost = np.where(np.isneginf(n_llr), 0.0, np.logaddexp(0, n_llr))
    return float((t_cost.mean() + n_cost.mean()) / (2 * math.log(2)))


# ------------------------------------------------------------------------- DET


@settings(max_examples=200, deadline=None)
@given(small_scores, small_scores)
def test_det_curve_matches_counting(tar, non):
    p_miss, p_fa, thresholds = det_curve(tar, non)
    ref_miss, ref_fa, ref_thr = brute_det(tar, non)
    np.testing.assert_array_equal(thresholds, ref_thr)
    np.testing.assert_allclose(p_miss, [float(x) for x in ref_miss], rtol=0, atol=1e-15)
    np.testing.assert_allclose(p_fa, [float(x) for x in ref_fa], rtol=0, atol=1e-15)
    assert p_miss[0] == 0 and p_fa[0] == 1 and p_miss[-1] == 1 and p_fa[-1] == 0
    assert np.all(np.diff(p_miss) >= 0) and np.all(np.diff(p_fa) <= 0)


def test_det_curve_ties_move_together():
    p_miss, p_fa, thresholds = det_curve([1.0, 1.0, 2.0], [1.0, 0.0])
    np.testing.assert_array_equal(thresholds, [0.0, 1.0, 2.0, np.inf])
    np.testing.assert_allclose(p_miss, [0, 0, 2 / 3, 1])
    np.testing.assert_allclose(p_fa, [1, 0.5, 0, 0])


def test_det_curve_contains_sklearn_points():
    from sklearn.metrics import det_curve as sk_det_curve

    rng = np.random.default_rng(1)
    tar = np.round(rng.normal(1, 1, 300), 1)
    non = np.round(rng.normal(0, 1, 700), 1)
    p_miss, p_fa, thresholds = det_curve(tar, non)
    labels = np.r_[np.ones(tar.size), np.zeros(non.size)]
    sk_fpr, sk_fnr, sk_thr = sk_det_curve(labels, np.r_[tar, non])
    index = np.searchsorted(thresholds, sk_thr)
    np.testing.assert_array_equal(thresholds[index], sk_thr)
    np.testing.assert_allclose(p_fa[index], sk_fpr)
    np.testing.assert_allclose(p_miss[index], sk_fnr)


# ------------------------------------------------------------------------- EER


@settings(max_examples=200, deadline=None)
@given(small_scores, small_scores)
def test_eer_equals_max_over_priors_of_min_bayes_error(tar, non):
    assert eer(tar, non) == pytest.approx(float(brute_rocch_eer(tar, non)), abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(float_scores, float_scores)
def test_eer_brute_force_float_scores(tar, non):
    assert eer(tar, non) == pytest.approx(float(brute_rocch_eer(tar, non)), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(small_scores, small_scores)
def test_rocch_vertices_are_the_lower_convex_hull(tar, non):
    p_miss, p_fa, thresholds = rocch(tar, non)
    ref_miss, ref_fa, ref_thr = brute_det(tar, non)
    hull = lower_hull(list(zip(ref_fa, ref_miss)))
    ours = sorted(zip((Fraction(x).limit_denominator(100) for x in p_fa),
                      (Fraction(x).limit_denominator(100) for x in p_miss)),
                  key=lambda p: (p[0], -p[1]))
    assert ours == hull
    # Every vertex is an actual operating point at its threshold.
    lookup = dict(zip(ref_thr, zip(ref_miss, ref_fa)))
    for m, f, t in zip(p_miss, p_fa, thresholds):
        assert (pytest.approx(float(lookup[t][0])), pytest.approx(float(lookup[t][1]))) == (m, f)


def test_eer_known_values():
    assert eer([1, 2, 3], [-3, -2, -1]) == 0.0
    assert eer([0.0] * 4, [0.0] * 7) == 0.5
    # Reversed scores: the hull is the chance line, whose EER is 0.5 (never above).
    assert eer([-1.0], [1.0]) == 0.5
    # One target below one of two non-targets: points (Pfa, Pmiss) = (1,0), (1/2,0),
    # (1/2,1)... the hull segment from (1/2, 0) to (0, 1) crosses the diagonal at 1/3.
    assert eer([1.0], [0.0, 2.0]) == pytest.approx(1 / 3)
    rng = np.random.default_rng(0)
    value = eer(rng.normal(2, 1, 20000), rng.normal(0, 1, 20000))
    assert value == pytest.approx(0.158655, abs=0.006)  # Phi(-1) for d' = 2


@settings(max_examples=100, deadline=None)
@given(small_scores, small_scores)
def test_eer_threshold_minimises_worst_error(tar, non):
    value, threshold = eer_with_threshold(tar, non)
    ref_miss, ref_fa, ref_thr = brute_det(tar, non)
    worst = [max(m, f) for m, f in zip(ref_miss, ref_fa)]
    at = ref_thr.index(threshold)
    assert worst[at] == min(worst)
    assert float(worst[at]) >= value - 1e-12


@settings(max_examples=100, deadline=None)
@given(float_scores, float_scores)
def test_eer_and_min_dcf_invariant_to_monotone_transform(tar, non):
    # Replace each score by its rank among the distinct scores: strictly increasing, exact.
    distinct = np.unique(np.r_[tar, non])
    rank_tar, rank_non = np.searchsorted(distinct, tar), np.searchsorted(distinct, non)
    assert eer(rank_tar, rank_non) == eer(tar, non)
    assert min_dcf(rank_tar, rank_non)[0] == min_dcf(tar, non)[0]


# ------------------------------------------------------------------------- DCF


def brute_min_dcf(tar, non, p, cm, cf):
    best = math.inf
    for thr in sorted(set(tar) | set(non)) + [math.inf]:
        pm = sum(t < thr for t in tar) / len(tar)
        pf = sum(n >= thr for n in non) / len(non)
        best = min(best, (cm * p * pm + cf * (1 - p) * pf) / min(cm * p, cf * (1 - p)))
    return best


@settings(max_examples=100, deadline=None)
@given(small_scores, small_scores, st.sampled_from([0.5, 0.01, 0.001, 0.3]),
       st.sampled_from([1.0, 10.0]), st.sampled_from([1.0, 3.0]))
def test_min_dcf_matches_brute_force(tar, non, p, cm, cf):
    value, threshold = min_dcf(tar, non, p, cm, cf)
    assert value == pytest.approx(brute_min_dcf(tar, non, p, cm, cf), abs=1e-12)
    assert actual_dcf(tar, non, threshold, p, cm, cf) == pytest.approx(value, abs=1e-12)
    assert value <= 1.0 + 1e-12
    raw, _ = min_dcf(tar, non, p, cm, cf, normalize=False)
    assert raw == pytest.approx(value * min(cm * p, cf * (1 - p)))


def test_operating_points():
    assert OPERATING_POINTS["sre08"] == DCFOperatingPoint(0.01, 10.0, 1.0)
    assert OPERATING_POINTS["sre10"] == DCFOperatingPoint(0.001, 1.0, 1.0)
    with pytest.raises(AttributeError):
        OPERATING_POINTS["sre08"].p_target = 0.5  # frozen
    assert OPERATING_POINTS["sre08"].normalizer == pytest.approx(0.1)
    assert OPERATING_POINTS["sre08"].effective_prior == pytest.approx(0.1 / 1.09)
    rng = np.random.default_rng(3)
    tar, non = rng.normal(2, 1, 500), rng.normal(0, 1, 5000)
    assert min_dcf(tar, non, operating_point="sre08") == min_dcf(tar, non, 0.01, 10, 1)
    assert min_dcf(tar, non, operating_point="sre10") == min_dcf(tar, non, 0.001, 1, 1)
    with pytest.raises(ValueError, match="sre99"):
        min_dcf(tar, non, operating_point="sre99")
    with pytest.raises(ValueError, match="p_target"):
        DCFOperatingPoint(1.0)


def test_bayes_threshold_and_actual_dcf_on_calibrated_scores():
    assert bayes_threshold(0.5) == 0.0
    assert bayes_threshold(0.01, 10, 1) == pytest.approx(-math.log(0.1 / 0.99))
    assert OPERATING_POINTS["sre10"].bayes_threshold == pytest.approx(math.log(999))
    # llr = x exactly when targets ~ N(mu, 2mu) and non-targets ~ N(-mu, 2mu): calibrated,
    # so the Bayes threshold is (nearly) as good as the best threshold.
    mu = 2.0
    rng = np.random.default_rng(7)
    tar = rng.normal(mu, math.sqrt(2 * mu), 200_000)
    non = rng.normal(-mu, math.sqrt(2 * mu), 200_000)
    for name in ("sre08", "sre10"):
        best, _ = min_dcf(tar, non, operating_point=name)
        act = actual_dcf(tar, non, operating_point=name)
        assert act == pytest.approx(best, abs=0.03)
    # Shifted (mis-calibrated) scores cost more at the Bayes threshold.
    assert actual_dcf(tar + 3, non + 3, operating_point="sre08") > min_dcf(
        tar, non, operating_point="sre08")[0] + 0.05


def test_actual_dcf_counts_ties_as_accepts():
    # target at the threshold is accepted (no miss), non-target at it is a false alarm.
    assert actual_dcf([1.0], [1.0], 1.0, p_target=0.5, normalize=False) == 0.5
    assert actual_dcf([1.0], [0.0], 1.0, p_target=0.5) == 0.0


# ------------------------------------------------------------------------ Cllr


def test_cllr_known_values():
    assert cllr([0.0, 0.0], [0.0]) == pytest.approx(1.0)
    assert cllr([50.0], [-50.0]) == pytest.approx(0.0, abs=1e-20)
    llr_t, llr_n = np.array([1.0, -0.5, 3.0]), np.array([-2.0, 0.3])
    ref = (np.mean([math.log2(1 + math.exp(-x)) for x in llr_t])
           + np.mean([math.log2(1 + math.exp(x)) for x in llr_n])) / 2
    assert cllr(llr_t, llr_n) == pytest.approx(ref)
    assert math.isfinite(cllr([-1e6], [1e6]))  # no overflow


@settings(max_examples=100, deadline=None)
@given(grid_scores, grid_scores)
def test_min_cllr_matches_isotonic_regression(tar, non):
    value = min_cllr(tar, non)
    assert value == pytest.approx(isotonic_min_cllr(np.array(tar), np.array(non)), abs=1e-9)
    assert value <= cllr(tar, non) + 1e-9
    assert value <= 1.0 + 1e-12


def test_min_cllr_properties():
    assert min_cllr([3.0, 4.0], [1.0, 2.0]) == 0.0
    assert min_cllr([0.0] * 3, [0.0] * 5) == pytest.approx(1.0)
    rng = np.random.default_rng(2)
    tar, non = rng.normal(1.5, 1, 3000), rng.normal(0, 1, 3000)
    # Invariant to monotone transforms of the scores; PAV LLRs are calibrated.
    assert min_cllr(np.exp(tar), np.exp(non)) == pytest.approx(min_cllr(tar, non))
    t_llr, n_llr = pav_llrs(tar, non)
    # The PAV LLRs are a non-decreasing function of the score ...
    order = np.argsort(np.r_[tar, non], kind="stable")
    by_score = np.r_[t_llr, n_llr][order]
    assert np.all(by_score[1:] >= by_score[:-1])
    # ... and their Cllr is min Cllr (infinite LLRs only on the side where they cost 0).
    assert not np.isneginf(t_llr).any() and not np.isposinf(n_llr).any()
    finite_t, finite_n = t_llr[np.isfinite(t_llr)], n_llr[np.isfinite(n_llr)]
    cost = (np.logaddexp(0, -finite_t).sum() / tar.size
            + np.logaddexp(0, finite_n).sum() / non.size) / (2 * math.log(2))
    assert cost == pytest.approx(min_cllr(tar, non))
    # The raw scores are not calibrated LLRs, so their Cllr is higher.
    assert min_cllr(tar, non) < cllr(tar, non)


# ---------------------------------------------------------------- identification


def test_identification_accuracy_and_confusion():
    scores = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 5.0], [1.0, 4.0, 0.0], [2.0, 2.0, 1.0]])
    truth = np.array([0, 1, 1, 1])
    assert identification_accuracy(scores, truth) == 0.5  # row 3 ties -> model 0
    expected = np.array([[1, 0, 0], [1, 1, 1], [0, 0, 0]])
    np.testing.assert_array_equal(identification_confusion(scores, truth), expected)
    np.testing.assert_array_equal(confusion_matrix([0, 1, 1], [0, 0, 1]), [[1, 0], [1, 1]])
    with pytest.raises(ValueError, match="true_model_index"):
        identification_accuracy(scores, [0, 1, 3, 0])
    with pytest.raises(ValueError, match="score_matrix"):
        identification_accuracy(np.zeros((0, 3)), np.zeros(0, dtype=int))


# ------------------------------------------------------------------- summary


def test_evaluate_scores_is_complete_and_json_able():
    rng = np.random.default_rng(5)
    tar, non = rng.normal(2, 1, 400), rng.normal(0, 1, 4000)
    result = evaluate_scores(tar, non)
    json.dumps(result, allow_nan=False)
    for key in ("eer", "min_dcf", "min_dcf_sre08", "min_dcf_sre10", "cllr", "min_cllr",
                "n_target", "n_nontarget", "eer_threshold", "actual_dcf_sre08"):
        assert key in result
    assert result["n_target"] == 400 and result["n_nontarget"] == 4000
    assert result["eer"] == eer(tar, non)
    assert result["min_dcf"] == result["min_dcf_sre08"] == min_dcf(tar, non, 0.01, 10, 1)[0]
    assert result["min_dcf_operating_point"] == "sre08"
    custom = evaluate_scores(tar, non, {"balanced": DCFOperatingPoint(0.5)})
    assert custom["min_dcf"] == custom["min_dcf_balanced"]
    # Here rejecting every trial is optimal: the infinite threshold is reported as None
    # so the result stays valid JSON.
    worst = evaluate_scores([-5.0], [5.0])
    assert worst["min_dcf_threshold_sre08"] is None
    json.dumps(worst, allow_nan=False)


@pytest.mark.parametrize("func", [eer, det_curve, lambda t, n: min_dcf(t, n), cllr,
                                  min_cllr, evaluate_scores])
def test_input_validation_names_the_argument(func):
    good = [0.0, 1.0]
    with pytest.raises(ValueError, match="target.*empty"):
        func([], good)
    with pytest.raises(ValueError, match="nontarget.*empty"):
        func(good, [])
    with pytest.raises(ValueError, match="nontarget.*non-finite"):
        func(good, [0.0, np.nan])
    with pytest.raises(ValueError, match="target.*non-finite"):
        func([np.inf], good)
    with pytest.raises(ValueError, match="1-D"):
        func(np.zeros((2, 2)), good)


def test_large_input_is_fast_enough_and_exact():
    # O(n log n): a million trials in well under a few seconds (not a benchmark).
    rng = np.random.default_rng(0)
    tar, non = rng.normal(2, 1, 100_000), rng.normal(0, 1, 900_000)
    value = metrics.eer(tar, non)
    assert 0.14 < value < 0.18
