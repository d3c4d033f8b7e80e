"""Frame-level post-processing: deltas, CMVN (utterance / sliding), feature warping, energy VAD.

All functions take and return ``(n_frames, n_dims)`` arrays and are vectorised over frames.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = [
    "add_deltas",
    "delta_filters",
    "cmvn",
    "sliding_cmvn",
    "feature_warp",
    "energy_vad",
    "window_starts",
]


@functools.lru_cache(maxsize=16)
def delta_filters(order: int, window: int = 2) -> np.ndarray:
    """Regression filters of Kaldi's ``add-deltas``, one row per order 0..``order``.

    The order-1 filter is ``j / (2 sum_n n^2)`` for ``j = -N..N``; higher orders convolve
    it with itself. Rows are centred in a common width ``2 * order * N + 1``.
    """
    width = 2 * order * window + 1
    filters = np.zeros((order + 1, width))
    centre = order * window
    filters[0, centre] = 1.0
    taps = np.arange(-window, window + 1, dtype=float)
    first = taps / (2.0 * np.sum(taps[window + 1:] ** 2))
    current = np.array([1.0])
    for i in range(1, order + 1):
        current = np.convolve(current, first)
        half = len(current) // 2
        filters[i, centre - half:centre + half + 1] = current
    filters.setflags(write=False)
    return filters


def add_deltas(features: np.ndarray, order: int = 2, window: int = 2) -> np.ndarray:
    """Append delta (and delta-delta...) features, Kaldi style, with edge frames replicated.

    Parameters
    ----------
    features : ndarray of shape (n_frames, n_dims)
    order : int
        0 returns the input; 2 gives ``[static, delta, delta-delta]``.
    window : int
        Regression half-window ``N``.

    Returns
    -------
    ndarray of shape (n_frames, n_dims * (order + 1))

    Notes
    -----
    Frames beyond the ends are copies of the first/last frame (as Kaldi's ``add-deltas``),
    so the deltas of the last frames are regressions over real data and differ frame to
    frame; librosa's ``delta`` with its default ``mode="interp"`` instead fits one
    polynomial to the last ``width`` frames, which makes the final frames' deltas identical.
    """
    features = np.asarray(features)
    if order == 0:
        return features
    n_frames, n_dims = features.shape
    filters = delta_filters(order, window)
    pad = order * window
    padded = np.concatenate([np.repeat(features[:1], pad, axis=0), features,
                             np.repeat(features[-1:], pad, axis=0)])
    # (n_frames, width, n_dims) view of each frame's neighbourhood; one contraction gives
    # every order at once.
    width = filters.shape[1]
    s0, s1 = padded.strides
    windows = np.lib.stride_tricks.as_strided(padded, shape=(n_frames, n_dims, width),
                                              strides=(s0, s1, s0), writeable=False)
    out = np.matmul(windows, filters[1:].T.astype(features.dtype, copy=False))  # (T, D, order)
    return np.concatenate([features, out.transpose(0, 2, 1).reshape(n_frames, order * n_dims)], axis=1)


def cmvn(features: np.ndarray, variance: bool = True, floor: float = 1e-10) -> np.ndarray:
    """Per-utterance mean (and variance) normalisation.

    Dimensions with (almost) no variance are only mean-normalised.
    """
    features = np.asarray(features, dtype=np.float64)
    centred = features - features.mean(axis=0)
    if not variance:
        return centred
    std = np.sqrt(np.mean(centred * centred, axis=0))
    return centred / np.where(std > floor, std, 1.0)


def window_starts(n_frames: int, window: int, center: bool = True) -> tuple[np.ndarray, int]:
    """First frame of each frame's normalisation window and the window length.

    Windows hold ``min(window, n_frames)`` frames; centred windows are shifted to stay
    inside the utterance (as Kaldi's ``apply-cmvn-sliding --center``), non-centred ones end
    at the frame.
    """
    width = min(window, n_frames)
    t = np.arange(n_frames)
    starts = t - window // 2 if center else t - width + 1
    return np.clip(starts, 0, n_frames - width), width


def sliding_cmvn(features: np.ndarray, window: int = 300, variance: bool = False,
                 center: bool = True, floor: float = 1e-10) -> np.ndarray:
    """Sliding-window cepstral mean (and variance) normalisation.

    Each frame is normalised by the statistics of ``window`` frames around it (fewer when
    the utterance is shorter), computed with cumulative sums, so the cost is linear in the
    number of frames whatever the window.
    """
    x = np.asarray(features, dtype=np.float64)
    n_frames = x.shape[0]
    # Centre on the utterance mean first: cumulative sums of x^2 then lose less precision.
    x = x - x.mean(axis=0)
    starts, width = window_starts(n_frames, window, center)
    zero = np.zeros((1, x.shape[1]))
    csum = np.concatenate([zero, np.cumsum(x, axis=0)])
    mean = (csum[starts + width] - csum[starts]) / width
    out = x - mean
    if variance:
        csq = np.concatenate([zero, np.cumsum(x * x, axis=0)])
        var = (csq[starts + width] - csq[starts]) / width - mean * mean
        std = np.sqrt(np.maximum(var, 0.0))
        out /= np.where(std > floor, std, 1.0)
    return out


def feature_warp(features: np.ndarray, window: int = 300, block: int = 256) -> np.ndarray:
    """Feature warping (short-time Gaussianisation, Pelecanos & Sridharan 2001).

    Each value is replaced by the standard-normal quantile of its rank among the
    ``window`` frames around it (mid-ranks for ties): ``Phi^-1((rank - 1/2) / width)``.
    Frames are processed in blocks so memory stays ``block * window * n_dims``.
    """
    from scipy.special import ndtri

    x = np.asarray(features)
    n_frames, n_dims = x.shape
    starts, width = window_starts(n_frames, window, center=True)
    # (n_frames - width + 1, n_dims, width): every window's values, as a view
    windows = np.lib.stride_tricks.sliding_window_view(x, width, axis=0)
    out = np.empty((n_frames, n_dims))
    for lo in range(0, n_frames, block):
        hi = min(n_frames, lo + block)
        w = windows[starts[lo:hi]]                      # (b, D, width)
        v = x[lo:hi, :, None]                           # (b, D, 1)
        below = np.count_nonzero(w < v, axis=2)
        ties = np.count_nonzero(w == v, axis=2)         # includes the value itself
        rank = below + 0.5 * (ties + 1)                 # 1-based mid-rank
        out[lo:hi] = ndtri((rank - 0.5) / width)
    return out


def energy_vad(log_energy: np.ndarray, threshold: float = 5.5, mean_scale: float = 0.5,
               context: int = 2, proportion: float = 0.6) -> np.ndarray:
    """Energy voice-activity detection in the style of Kaldi's ``compute-vad``.

    A frame is above threshold when its log energy exceeds
    ``threshold + mean_scale * mean(log_energy)``; it is speech when at least
    ``proportion`` of the frames within ``context`` of it (clipped at the ends) are above.

    Returns
    -------
    ndarray of bool, shape (n_frames,)
    """
    log_energy = np.asarray(log_energy, dtype=np.float64)
    n_frames = log_energy.shape[0]
    if n_frames == 0:
        return np.zeros(0, dtype=bool)
    above = log_energy > threshold + mean_scale * log_energy.mean()
    if context == 0:
        return above
    counts = np.concatenate([[0], np.cumsum(above)])
    t = np.arange(n_frames)
    lo = np.maximum(t - context, 0)
    hi = np.minimum(t + context + 1, n_frames)
    return (counts[hi] - counts[lo]) >= proportion * (hi - lo)
