"""Log-space forward-backward and Viterbi kernels (numba).

Everything here works on a *batch* of sequences stored back to back in one array of
emission log-likelihoods ``log_emit`` of shape (N, S), with ``offsets`` (n_seq + 1,)
marking where each sequence starts (``offsets[0] == 0``, ``offsets[-1] == N``). Sequences
are independent, but the kernels run them one after the other: each is short (tens of
frames), and on the 2-core machines this project targets numba's thread pool made the
batch 3x *slower* (measured in docs/hmm.md); parallelism belongs one level up, across
word models in worker processes (``WordRecognizer(jobs=...)``).

Transitions are passed as sparse lists of *allowed* edges (log-probabilities > -inf), in
two CSR layouts built by :func:`edge_lists`: the predecessors of each state (for the
forward and Viterbi recursions) and the successors of each state (for the backward
recursion). A left-to-right model with S states has about 2S edges instead of S*S, and a
structural zero is never even visited, so it can never become non-zero.

Ending: ``log_final`` (S,) is 0 for the states a sequence may end in and -inf for the
others (a left-to-right word model must end in its last state, as in HTK). A sequence
that admits no path (too short for the topology) gets log-likelihood -inf, zero
occupancies and, for Viterbi, a path of -1.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

__all__ = ["EdgeLists", "edge_lists", "forward_backward", "forward_loglik", "viterbi"]

NEG_INF = -np.inf


class EdgeLists(NamedTuple):
    """CSR lists of the allowed transitions of an (S, S) log transition matrix.

    For state j, the edges ``pred_ptr[j]:pred_ptr[j+1]`` come from states ``pred_src``
    with log-probabilities ``pred_logp`` (the forward and Viterbi recursions); for state
    i, the edges ``succ_ptr[i]:succ_ptr[i+1]`` go to ``succ_dst`` with ``succ_logp`` (the
    backward recursion). Successor order is the row-major order of the (i, j) pairs: the
    order of the expected transition counts ``xi`` that :func:`forward_backward` returns.
    The kernels take the fields one by one (numba compiles plain arrays).
    """

    pred_ptr: np.ndarray
    pred_src: np.ndarray
    pred_logp: np.ndarray
    succ_ptr: np.ndarray
    succ_dst: np.ndarray
    succ_logp: np.ndarray

    @property
    def succ_src(self) -> np.ndarray:
        """The source state of every edge, in successor order (``xi``'s columns are
        transitions ``succ_src -> succ_dst``)."""
        return np.repeat(np.arange(self.succ_ptr.size - 1), np.diff(self.succ_ptr))


def edge_lists(log_transmat: np.ndarray) -> EdgeLists:
    """The :class:`EdgeLists` of the allowed transitions (> -inf) of ``log_transmat`` (S, S)."""
    log_transmat = np.asarray(log_transmat, dtype=np.float64)
    n_states = log_transmat.shape[0]
    src, dst = np.nonzero(log_transmat > -np.inf)  # row-major: sorted by source
    succ_ptr = np.zeros(n_states + 1, dtype=np.int64)
    np.add.at(succ_ptr, src + 1, 1)
    succ_ptr = np.cumsum(succ_ptr)
    succ_dst = dst.astype(np.int64)
    succ_logp = log_transmat[src, dst].copy()
    order = np.lexsort((src, dst))  # sorted by destination
    pred_ptr = np.zeros(n_states + 1, dtype=np.int64)
    np.add.at(pred_ptr, dst + 1, 1)
    pred_ptr = np.cumsum(pred_ptr)
    pred_src = src[order].astype(np.int64)
    pred_logp = log_transmat[src[order], dst[order]].copy()
    return EdgeLists(pred_ptr, pred_src, pred_logp, succ_ptr, succ_dst, succ_logp)


@njit(cache=True, inline="always")
def _logaddexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    if a > b:
        return a + np.log1p(np.exp(b - a))
    return b + np.log1p(np.exp(a - b))


@njit(cache=True)
def _forward_one(log_start, log_emit, pred_ptr, pred_src, pred_logp, alpha):
    """Fill ``alpha`` (T, S) for one sequence: alpha[t, j] = log p(x_0..x_t, q_t = j)."""
    n_frames, n_states = alpha.shape
    for j in range(n_states):
        alpha[0, j] = log_start[j] + log_emit[0, j]
    for t in range(1, n_frames):
        for j in range(n_states):
            acc = NEG_INF
            for e in range(pred_ptr[j], pred_ptr[j + 1]):
                acc = _logaddexp(acc, alpha[t - 1, pred_src[e]] + pred_logp[e])
            alpha[t, j] = acc + log_emit[t, j]


@njit(cache=True)
def _terminal_loglik(alpha_last, log_final):
    acc = NEG_INF
    for j in range(alpha_last.shape[0]):
        acc = _logaddexp(acc, alpha_last[j] + log_final[j])
    return acc


@njit(cache=True)
def forward_loglik(log_start, log_final, pred_ptr, pred_src, pred_logp, log_emit, offsets):
    """Per-sequence log-likelihood log p(X_n) by the forward recursion (no posteriors)."""
    n_seq = offsets.shape[0] - 1
    n_states = log_start.shape[0]
    loglik = np.empty(n_seq)
    for n in range(n_seq):
        lo, hi = offsets[n], offsets[n + 1]
        prev = np.empty(n_states)
        cur = np.empty(n_states)
        for j in range(n_states):
            prev[j] = log_start[j] + log_emit[lo, j]
        for t in range(lo + 1, hi):
            for j in range(n_states):
                acc = NEG_INF
                for e in range(pred_ptr[j], pred_ptr[j + 1]):
                    acc = _logaddexp(acc, prev[pred_src[e]] + pred_logp[e])
                cur[j] = acc + log_emit[t, j]
            prev, cur = cur, prev
        loglik[n] = _terminal_loglik(prev, log_final)
    return loglik


@njit(cache=True)
def forward_backward(log_start, log_final, pred_ptr, pred_src, pred_logp,
                     succ_ptr, succ_dst, succ_logp, log_emit, offsets):
    """Posteriors of a batch of sequences.

    Returns
    -------
    gamma : (N, S) state occupancies p(q_t = s | X_n) (zeros for a sequence with no path)
    xi : (n_seq, n_edges) expected transition counts along each allowed edge, summed over
        time, edges numbered as in ``succ_*`` (row-major (i, j) order)
    loglik : (n_seq,) log p(X_n), -inf for a sequence with no path
    """
    n_seq = offsets.shape[0] - 1
    n_frames_total, n_states = log_emit.shape
    n_edges = succ_dst.shape[0]
    gamma = np.zeros((n_frames_total, n_states))
    xi = np.zeros((n_seq, n_edges))
    loglik = np.empty(n_seq)
    for n in range(n_seq):
        lo, hi = offsets[n], offsets[n + 1]
        n_frames = hi - lo
        emit = log_emit[lo:hi]
        alpha = np.empty((n_frames, n_states))
        _forward_one(log_start, emit, pred_ptr, pred_src, pred_logp, alpha)
        ll = _terminal_loglik(alpha[n_frames - 1], log_final)
        loglik[n] = ll
        if ll == NEG_INF:
            continue
        beta = np.empty((n_frames, n_states))
        for i in range(n_states):
            beta[n_frames - 1, i] = log_final[i]
        # beta[t, i] = log p(x_{t+1}.. | q_t = i); the xi terms need the same sums, so they
        # are accumulated in the same sweep.
        for t in range(n_frames - 2, -1, -1):
            for i in range(n_states):
                acc = NEG_INF
                a_ti = alpha[t, i]
                for e in range(succ_ptr[i], succ_ptr[i + 1]):
                    j = succ_dst[e]
                    term = succ_logp[e] + emit[t + 1, j] + beta[t + 1, j]
                    acc = _logaddexp(acc, term)
                    if term != NEG_INF and a_ti != NEG_INF:
                        xi[n, e] += np.exp(a_ti + term - ll)
                beta[t, i] = acc
        for t in range(n_frames):
            for i in range(n_states):
                s = alpha[t, i] + beta[t, i]
                if s != NEG_INF:
                    gamma[lo + t, i] = np.exp(s - ll)
    return gamma, xi, loglik


@njit(cache=True)
def viterbi(log_start, log_final, pred_ptr, pred_src, pred_logp, log_emit, offsets):
    """Best state path of each sequence of a batch.

    Returns
    -------
    path : (N,) int64 state of each frame on the best path (-1 for a sequence with no path)
    score : (n_seq,) log-probability of the best path joint with the frames (-inf: no path)

    Ties are broken towards the lowest-numbered predecessor / final state.
    """
    n_seq = offsets.shape[0] - 1
    n_frames_total, n_states = log_emit.shape
    path = np.full(n_frames_total, -1, dtype=np.int64)
    score = np.empty(n_seq)
    for n in range(n_seq):
        lo, hi = offsets[n], offsets[n + 1]
        n_frames = hi - lo
        delta = np.empty((n_frames, n_states))
        back = np.empty((n_frames, n_states), dtype=np.int64)
        for j in range(n_states):
            delta[0, j] = log_start[j] + log_emit[lo, j]
            back[0, j] = -1
        for t in range(1, n_frames):
            for j in range(n_states):
                best = NEG_INF
                arg = -1
                for e in range(pred_ptr[j], pred_ptr[j + 1]):
                    i = pred_src[e]
                    v = delta[t - 1, i] + pred_logp[e]
                    if v > best:  # predecessors come in ascending order: first wins ties
                        best = v
                        arg = i
                delta[t, j] = best + log_emit[lo + t, j]
                back[t, j] = arg
        best = NEG_INF
        arg = -1
        for j in range(n_states):
            v = delta[n_frames - 1, j] + log_final[j]
            if v > best:
                best = v
                arg = j
        score[n] = best
        if best == NEG_INF:
            continue
        state = arg
        for t in range(n_frames - 1, -1, -1):
            path[lo + t] = state
            state = back[t, state]
    return path, score


@njit(cache=True)
def segment_logsumexp(log_joint, n_groups, group_size):
    """(N, G*K) -> (N, G): log-sum-exp over consecutive groups of K columns.

    Turns the stacked per-component log joints of all states' mixtures into per-state
    emission log-likelihoods in one pass.
    """
    n_rows = log_joint.shape[0]
    out = np.empty((n_rows, n_groups))
    for r in range(n_rows):
        for g in range(n_groups):
            base = g * group_size
            m = NEG_INF
            for k in range(group_size):
                v = log_joint[r, base + k]
                if v > m:
                    m = v
            if m == NEG_INF:
                out[r, g] = NEG_INF
                continue
            acc = 0.0
            for k in range(group_size):
                acc += np.exp(log_joint[r, base + k] - m)
            out[r, g] = m + np.log(acc)
    return out


@njit(cache=True)
def occupancy_weighted_responsibilities(log_joint, log_emit, gamma, group_size):
    """In place: ``log_joint[t, s*K+k]`` -> ``gamma[t, s] * p(k | x_t, s)``.

    ``p(k | x_t, s) = exp(log_joint[t, s*K+k] - log_emit[t, s])``: the per-state component
    posteriors, scaled by the state occupancy. Frames a state does not occupy (gamma 0)
    get exactly 0 without evaluating the exponential.
    """
    n_rows, n_states = gamma.shape
    for t in range(n_rows):
        for s in range(n_states):
            g = gamma[t, s]
            base = s * group_size
            if g == 0.0:
                for k in range(group_size):
                    log_joint[t, base + k] = 0.0
            else:
                e = log_emit[t, s]
                for k in range(group_size):
                    log_joint[t, base + k] = g * np.exp(log_joint[t, base + k] - e)
    return log_joint
