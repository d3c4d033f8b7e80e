"""Calibration and fusion (prior-weighted logistic regression), Kaldi EER, operating points."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sklearn
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from speakergmm import metrics
from speakergmm.verification import VerificationError
from speakergmm.verification.calibration import LinearCalibration, fuse


def _trials(n_tar=300, n_non=3000, seed=0):
    rng = np.random.default_rng(seed)
    tar = np.column_stack([rng.normal(3.0, 1.5, n_tar), rng.normal(1.0, 0.7, n_tar)])
    non = np.column_stack([rng.normal(-1.0, 1.0, n_non), rng.normal(-0.2, 0.6, n_non)])
    return np.vstack([tar, non]), np.r_[np.ones(n_tar, bool), np.zeros(n_non, bool)]


@pytest.mark.parametrize("p_target,reg,columns", [(0.5, 0.0, [0]), (0.01, 0.0, [0, 1]), (0.2, 2.0, [0, 1])])
def test_equals_sklearn_logistic_regression(p_target, reg, columns):
    S, y = _trials()
    S = S[:, columns]
    cal = LinearCalibration(p_target=p_target, reg=reg).fit(S, y)
    weight = np.where(y, p_target / y.sum(), (1 - p_target) / (~y).sum())
    if reg == 0:
        # No penalty: C=inf from scikit-learn 1.8 on, penalty=None before.
        unpenalised = {"C": np.inf} if tuple(int(x) for x in sklearn.__version__.split(".")[:2]) >= (1, 8) \
            else {"penalty": None}
        ref = LogisticRegression(tol=1e-12, max_iter=10000, **unpenalised)
    else:
        ref = LogisticRegression(C=1.0 / reg, tol=1e-12, max_iter=10000)
    ref.fit(S, y, sample_weight=weight)
    np.testing.assert_allclose(cal.coef_, ref.coef_[0], rtol=1e-4, atol=1e-6)
    logit = math.log(p_target / (1 - p_target))
    assert cal.intercept_ == pytest.approx(ref.intercept_[0] - logit, rel=1e-4, abs=1e-5)


def test_calibrated_actual_dcf_near_min_dcf():
    S, y = _trials(n_tar=2000, n_non=20000, seed=1)
    raw = 5.0 * S[:, 0] + 7.0  # badly scaled and shifted scores
    op = metrics.OPERATING_POINTS["sre08"]
    before = metrics.actual_dcf(raw[y], raw[~y], operating_point=op)
    train = np.arange(len(y)) % 2 == 0
    cal = LinearCalibration(p_target=op.effective_prior).fit(raw[train], y[train])
    llr = cal.transform(raw[~train])
    yt = y[~train]
    actual = metrics.actual_dcf(llr[yt], llr[~yt], operating_point=op)
    minimum, _ = metrics.min_dcf(llr[yt], llr[~yt], operating_point=op)
    assert before > 1.5 * minimum
    assert actual <= 1.1 * minimum + 0.01


def test_fusion_beats_each_system():
    S, y = _trials(seed=2)
    fused, cal = fuse([S[:, 0], S[:, 1]], y)
    assert cal.coef_.shape == (2,)
    eer = metrics.eer
    assert eer(fused[y], fused[~y]) <= min(eer(S[y, 0], S[~y, 0]), eer(S[y, 1], S[~y, 1])) + 1e-12
    assert metrics.cllr(fused[y], fused[~y]) < 0.5


def test_calibration_files_and_errors(tmp_path):
    S, y = _trials()
    cal = LinearCalibration(0.1).fit(S[:, 0], y)
    cal.save(tmp_path / "cal.npz")
    back = LinearCalibration.load(tmp_path / "cal.npz")
    np.testing.assert_allclose(back.transform(S[:, 0]), cal.transform(S[:, 0]))
    with pytest.raises(VerificationError, match="target and non-target"):
        LinearCalibration().fit(S[:5, 0], np.ones(5, bool))
    with pytest.raises(VerificationError, match="NaN"):
        LinearCalibration().fit([1.0, np.nan], [True, False])
    with pytest.raises(VerificationError, match="columns"):
        cal.transform(S)


def _kaldi_reference(tar, non):
    """Kaldi compute-eer's loop, written out as described in its documentation."""
    tar, non = sorted(tar), sorted(non)
    for i in range(len(tar)):
        pos = len(non) - 1 - int(len(non) * i / len(tar))
        pos = max(pos, 0)
        if non[pos] < tar[i]:
            return i / len(tar), tar[i]
    return 1.0, tar[-1]


def test_kaldi_eer():
    rng = np.random.default_rng(0)
    for n_tar, n_non in ((50, 500), (300, 300), (7, 1000)):
        tar, non = rng.normal(2, 1, n_tar), rng.normal(0, 1, n_non)
        value, threshold = metrics.kaldi_eer(tar, non)
        assert (value, threshold) == pytest.approx(_kaldi_reference(tar, non))
    tar, non = rng.normal(2, 1, 20000), rng.normal(0, 1, 20000)
    assert metrics.kaldi_eer(tar, non)[0] == pytest.approx(metrics.eer(tar, non), abs=0.003)
    assert metrics.kaldi_eer([5.0], [0.0])[0] == 0.0
    result = metrics.evaluate_scores(tar[:100], non[:100])
    assert result["eer_kaldi"] == metrics.kaldi_eer(tar[:100], non[:100])[0]


def test_operating_point_presets():
    assert metrics.named_operating_point("SRE10").p_target == 0.001
    assert metrics.named_operating_point("voxsrc").p_target == 0.05
    assert metrics.named_operating_point("sre16").c_miss == 1.0
    with pytest.raises(ValueError, match="presets"):
        metrics.named_operating_point("sre99")


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 60), st.integers(0, 2**31 - 1))
def test_kaldi_eer_properties(n_tar, n_non, seed):
    """In [0, 1], invariant under increasing transforms, and never below the ROCCH EER by
    more than the quantisation of one target."""
    rng = np.random.default_rng(seed)
    tar, non = rng.normal(1, 1, n_tar), rng.normal(0, 1, n_non)
    value, _ = metrics.kaldi_eer(tar, non)
    assert 0.0 <= value <= 1.0
    assert metrics.kaldi_eer(np.exp(tar), np.exp(non))[0] == value
    assert value >= metrics.eer(tar, non) - 1.0 / n_tar - 1.0 / n_non - 1e-12
