"""Speaker adaptation and normalisation for HMM recognisers: MLLR, speaker CMVN, VTLN.

All three move a recogniser trained on some speakers towards a speaker it has not heard,
using only that speaker's (unlabelled) recordings:

- :func:`speaker_cmvn`: mean and variance normalisation of every feature dimension over
  *all* of a speaker's frames (Kaldi's per-speaker CMVN), instead of over each utterance:
  a one-word utterance is too short for its mean to be the speaker's rather than the
  word's.
- :func:`estimate_mllr` / :func:`apply_mllr`: maximum-likelihood linear regression
  (Leggetter and Woodland, 1995), one affine transform ``mu' = A mu + b`` of the means of
  every Gaussian of every word model, estimated from Baum-Welch statistics
  (:meth:`GMMHMM.accumulate`) of the speaker's recordings. With one transform for all
  Gaussians, a few utterances are enough, even with a first-pass transcription that has
  errors.
- MAP (:meth:`GMMHMM.adapt_map`): each Gaussian moves by its own statistics; needs more
  data, refines what MLLR leaves.
- :func:`vtln_warp_factor`: vocal-tract length normalisation, the speaker's frequency
  warping factor chosen by likelihood over a grid (features recomputed with a warped
  mel filterbank, :func:`warped_extractor`).

:meth:`WordRecognizer.adapt <speakergmm.hmm.WordRecognizer.adapt>` runs the unsupervised
loop: recognise, accumulate statistics under the recognised words, adapt, recognise again.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from speakergmm.hmm.model import GMMHMM, HMMStats
from speakergmm.mixture import GMM

__all__ = ["MLLRTransform", "apply_mllr", "estimate_mllr", "speaker_cmvn", "warped_extractor",
           "vtln_warp_factor"]


class MLLRTransform:
    """An affine transform of Gaussian means, ``mu' = A mu + b``, stored as ``W = [b A]`` (D, D+1)."""

    def __init__(self, W: np.ndarray) -> None:
        W = np.asarray(W, dtype=np.float64)
        if W.ndim != 2 or W.shape[1] != W.shape[0] + 1:
            raise ValueError(f"W must have shape (D, D + 1), got {W.shape}")
        self.W = W

    @classmethod
    def identity(cls, n_features: int) -> "MLLRTransform":
        return cls(np.hstack([np.zeros((n_features, 1)), np.eye(n_features)]))

    @property
    def A(self) -> np.ndarray:
        return self.W[:, 1:]

    @property
    def b(self) -> np.ndarray:
        return self.W[:, 0]

    def __call__(self, means: np.ndarray) -> np.ndarray:
        return means @ self.A.T + self.b


def estimate_mllr(models: Sequence[GMMHMM], stats: Sequence[HMMStats | None],
                  min_occupancy: float = 0.0, ridge: float = 1e-6) -> MLLRTransform:
    """One mean transform shared by every Gaussian of ``models``, by maximum likelihood.

    For diagonal covariances each row ``w_i`` of ``W`` solves ``G_i w_i = k_i`` with
    ``G_i = sum_m n_m / s2_mi xi_m xi_m^T`` and ``k_i = sum_m f_mi / s2_mi xi_m``, where
    ``xi_m = [1, mu_m]``, ``n_m`` and ``f_m`` the occupancy and first-order sum of Gaussian
    m in ``stats`` (one :class:`HMMStats` per model, None for a model with no data).

    Parameters
    ----------
    min_occupancy : float
        With less total occupancy than this (frames), return the identity.
    ridge : float
        Added to the diagonal of each ``G_i``, relative to its mean diagonal entry, so that
        dimensions the data hardly constrains stay solvable.
    """
    if len(models) != len(stats):
        raise ValueError(f"{len(models)} models but {len(stats)} statistics")
    xis, occ, first, var = [], [], [], []
    for model, st in zip(models, stats):
        if st is None:
            continue
        for gmm, s in zip(model.states_, st.states):
            if s is None:
                continue
            v = gmm.covariances
            v = np.repeat(v[:, None], gmm.n_features, axis=1) if gmm.covariance_type == "spherical" else v
            if gmm.covariance_type not in ("diag", "spherical"):
                raise ValueError("MLLR here is for diagonal (or spherical) covariances")
            xis.append(np.hstack([np.ones((gmm.n_components, 1)), gmm.means]))
            occ.append(s.zeroth)
            first.append(s.first)
            var.append(v)
    n_features = models[0].n_features
    if not xis:
        return MLLRTransform.identity(n_features)
    Xi, n, F, V = (np.concatenate(a) for a in (xis, occ, first, var))
    if n.sum() < max(min_occupancy, 1e-10):
        return MLLRTransform.identity(n_features)
    G = np.einsum("mi,mp,mq->ipq", n[:, None] / V, Xi, Xi)
    K = np.einsum("mi,mp->ip", F / V, Xi)
    scale = np.trace(G, axis1=1, axis2=2) / G.shape[1]
    G = G + ridge * scale[:, None, None] * np.eye(G.shape[1])[None]
    return MLLRTransform(np.linalg.solve(G, K[..., None])[..., 0])


def apply_mllr(model: GMMHMM, transform: MLLRTransform) -> GMMHMM:
    """A copy of ``model`` with every Gaussian mean transformed."""
    states = [GMM(g.weights, transform(g.means), g.covariances, covariance_type=g.covariance_type)
              for g in model.states_]
    return model.with_states(states)


def speaker_cmvn(features: Mapping[str, np.ndarray], utt2spk: Mapping[str, str],
                 variance: bool = True, floor: float = 1e-10) -> dict[str, np.ndarray]:
    """Normalise every utterance by the mean (and standard deviation) of all its speaker's frames.

    Parameters
    ----------
    features : utterance id -> (T, D) array (without per-utterance CMVN)
    utt2spk : utterance id -> speaker id

    Returns
    -------
    dict of utterance id -> normalised float64 (T, D) array
    """
    missing = [u for u in features if u not in utt2spk]
    if missing:
        raise ValueError(f"utterance(s) without a speaker: {missing[:5]}")
    by_speaker: dict[str, list[str]] = {}
    for utt in features:
        by_speaker.setdefault(utt2spk[utt], []).append(utt)
    out: dict[str, np.ndarray] = {}
    for utts in by_speaker.values():
        frames = np.concatenate([np.asarray(features[u], dtype=np.float64) for u in utts])
        mean = frames.mean(axis=0)
        std = frames.std(axis=0) if variance else np.ones(frames.shape[1])
        std = np.where(std > floor, std, 1.0)
        for u in utts:
            out[u] = (np.asarray(features[u], dtype=np.float64) - mean) / std
    return out


def warped_extractor(config, warp: float, boundary: float = 0.85):
    """A feature extractor whose mel filterbank is warped by ``warp`` (VTLN).

    Piecewise-linear warping of the frequency axis (HTK's ``WARPFREQ``): frequencies up to
    ``boundary`` of the band's upper edge scale by ``1 / warp``; above it a straight line
    ends at the upper edge, so the band keeps its range. ``warp > 1`` compresses the
    speaker's spectrum (a longer vocal tract's formants move up to the average).
    """
    from librosa.filters import mel

    from speakergmm.features.extract import FeatureExtractor

    if not 0.5 < warp < 2.0:
        raise ValueError(f"warp must be in (0.5, 2), got {warp}")
    extractor = FeatureExtractor(config)
    if warp == 1.0:
        return extractor
    c = config
    top = float(c.upper_frequency)
    n_fft = extractor.n_fft
    freqs = np.fft.rfftfreq(n_fft, 1.0 / c.sample_rate)
    knee = boundary * top * min(1.0, warp)
    warped = np.where(freqs <= knee, freqs / warp,
                      knee / warp + (freqs - knee) * (top - knee / warp) / max(top - knee, 1e-9))
    # The unwarped bank evaluated at the warped frequencies (linear interpolation in bins).
    bank = mel(sr=c.sample_rate, n_fft=n_fft, n_mels=c.mel_bands, fmin=c.fmin, fmax=top, htk=True,
               norm=None, dtype=np.float64)
    warped_bank = np.stack([np.interp(warped, freqs, row) for row in bank])
    extractor.melbank = np.ascontiguousarray(warped_bank.T)
    return extractor


def vtln_warp_factor(score, warps: Sequence[float]) -> tuple[float, dict[float, float]]:
    """The warp factor with the largest score: ``score(warp) -> total log-likelihood``.

    Returns the best factor and every factor's score (a grid search, as HTK and Kaldi's
    likelihood-based VTLN do).
    """
    scores = {float(w): float(score(float(w))) for w in warps}
    if not scores:
        raise ValueError("no warp factors given")
    best = max(scores, key=scores.get)
    return best, scores
