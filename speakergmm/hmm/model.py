"""GMM-HMM: a hidden Markov model whose states emit Gaussian mixtures from the shared EM core.

Training is Baum-Welch in log space, written as the textbook E and M steps:

E-step
    1. Emission log-likelihoods ``log b_s(x_t)`` of every frame under every state's mixture,
       all states at once (one matrix product for the stacked components of all states).
    2. The forward-backward kernel turns them into state occupancies ``gamma_s(t)`` and
       expected transition counts ``xi(i, j)`` (numba, log space, all sequences in one call).
    3. Each state's mixture accumulates its statistics with the occupancies as frame
       weights: ``gmm_s.e_step(X, sample_weight=gamma_s)`` — exactly the accumulators of
       plain GMM training, so per-component occupancies are ``gamma_s(t) * p(k | x_t, s)``.

M-step
    ``ml_update(stats_s, previous=gmm_s)`` for each state's mixture (the shared M-step, with
    its covariance regularisation and variance floor); start and transition probabilities
    from the normalised occupancy and xi counts. Structural zeros stay zero (the kernels
    never visit a forbidden transition; smoothing floors only allowed ones).

Initialisation follows HTK: ``init="uniform"`` (HInit) cuts every training sequence into
S equal segments, fits state s's mixture on the s-th segments with the core's
GaussianMixture, and ``viterbi_iter`` rounds of Viterbi training (segmental k-means)
refine that segmentation before Baum-Welch; ``init="flat"`` (HCompV flat start) gives
every state the mixture of all the data.
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from speakergmm.hmm import _kernels as K
from speakergmm.hmm.topology import Topology
from speakergmm.io import load_model_file, save_model_file
from speakergmm.mixture import (GMM, ConvergenceWarning, GaussianMixture, ParamsMixin, SufficientStats,
                                check_frames, map_update, ml_update, stats_from_responsibilities)
from speakergmm.mixture.em import EMHooks, iterate, split_components
from speakergmm.mixture.init import check_random_state

__all__ = ["ConvergenceMonitor", "GMMHMM", "GaussianHMM", "HMMStats", "check_sequences", "NoPathError",
           "stack_sequences"]

FORMAT = "speakergmm.GMMHMM"
VERSION = 1

#: Least probability of an allowed transition after a Viterbi-training update.
VITERBI_TRANSITION_FLOOR = 1e-3

#: BLAS threads while training and batch scoring. The products here are small (thousands
#: of frames by a few hundred columns); with 2 OpenBLAS threads on a 2-core machine a
#: word model trained 5x *slower* than with one (docs/hmm.md). Parallelise across models.
BLAS_THREADS = 1

#: Keep the per-component log joints of all frames for the M-step's statistics while they
#: take at most this many elements (128 MiB); beyond it each state runs its own E-step.
_JOINT_ELEMENTS = 1 << 24


class NoPathError(ValueError):
    """A sequence admits no state path under the model's topology (e.g. it is too short)."""


def check_sequences(sequences: np.ndarray | Sequence[np.ndarray], n_features: int | None = None,
                    what: str = "sequence") -> tuple[np.ndarray, np.ndarray]:
    """Validate a list of (T, D) arrays and stack them for the batched kernels.

    Parameters
    ----------
    sequences : (T, D) array or sequence of them
    n_features : int, optional
        Required dimension D (a model's); a mismatch is an error naming the sequence.

    Returns
    -------
    X : (N, D) float64 C-contiguous array of all frames back to back
    offsets : (n_seq + 1,) int64, sequence n is ``X[offsets[n]:offsets[n+1]]``
    """
    if isinstance(sequences, np.ndarray) and sequences.ndim == 2:
        sequences = [sequences]
    if isinstance(sequences, np.ndarray) and sequences.ndim != 2:
        raise ValueError(f"a {what} must be a 2-D (frames, features) array, got shape {sequences.shape}")
    arrays = list(sequences)
    if not arrays:
        raise ValueError(f"no {what}s given")
    lengths = np.empty(len(arrays), dtype=np.int64)
    for n, seq in enumerate(arrays):
        arrays[n] = arr = np.asarray(seq)
        # A sequence's own rules: 2-D always, at least one frame.
        if arr.ndim != 2:
            raise ValueError(f"{what} {n}: must be a 2-D (frames, features) array, got shape {arr.shape}")
        if arr.shape[0] == 0:
            raise ValueError(f"{what} {n}: empty (0 frames)")
        if n_features is None:
            n_features = arr.shape[1]
        if arr.shape[1] != n_features:
            check_frames(arr, f"{what} {n}", n_features)  # raises, naming the sequence
        lengths[n] = arr.shape[0]
    # The package's per-array rules (real numbers, features, finite values) are check_frames',
    # run once on all frames; when they fail, once per sequence to name the one at fault.
    try:
        X = check_frames(np.concatenate(arrays, axis=0), f"{what}s", n_features)
    except (TypeError, ValueError):
        for n, arr in enumerate(arrays):
            check_frames(arr, f"{what} {n}", n_features)
        raise
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return X, offsets


def stack_sequences(X: np.ndarray | Sequence[np.ndarray], lengths: Sequence[int] | None = None,
                    n_features: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sequences given either way hmmlearn and speakergmm accept them, stacked for the kernels.

    Parameters
    ----------
    X : (N, D) array, or a sequence of (T, D) arrays
        With ``lengths``: all frames back to back (hmmlearn's convention). Without: one
        sequence (a 2-D array) or a list of sequences.
    lengths : sequence of int, optional
        Frames of each sequence in ``X``; they must sum to ``len(X)``.

    Returns
    -------
    X : (N, D) float64 array and offsets (n_seq + 1,), as :func:`check_sequences`.
    """
    if lengths is None:
        return check_sequences(X, n_features)
    if isinstance(lengths, (bool, np.bool_)):
        raise TypeError("lengths must be a sequence of sequence lengths, got a bool "
                        "(warm_start is keyword-only: fit(X, lengths, warm_start=True))")
    if not (isinstance(X, np.ndarray) or hasattr(X, "__array__")) or np.ndim(X) != 2:
        raise ValueError("with lengths, X must be one 2-D (frames, features) array holding all "
                         "sequences back to back")
    sizes = np.asarray(lengths)
    if sizes.ndim != 1 or sizes.size == 0 or not np.issubdtype(sizes.dtype, np.integer):
        raise ValueError(f"lengths must be a non-empty 1-D sequence of integers, got {lengths!r}")
    if np.any(sizes < 1):
        raise ValueError(f"lengths[{int(np.flatnonzero(sizes < 1)[0])}] is {int(sizes[sizes < 1][0])}; "
                         "every sequence needs at least one frame")
    X = np.asarray(X)
    if int(sizes.sum()) != X.shape[0]:
        raise ValueError(f"lengths sum to {int(sizes.sum())} but X has {X.shape[0]} frames")
    return check_sequences(np.split(X, np.cumsum(sizes)[:-1]), n_features)


@dataclass
class HMMStats:
    """Baum-Welch statistics of sequences under one HMM (:meth:`GMMHMM.accumulate`).

    Attributes
    ----------
    states : list of SufficientStats or None
        Each state's mixture statistics, frames weighted by the state's occupancy (None: a
        state no path visits).
    start_counts : (S,) expected number of sequences starting in each state
    transition_counts : (S, S) expected transition counts
    log_likelihood : float, total over the sequences
    n_sequences : int
    """

    states: list[SufficientStats | None]
    start_counts: np.ndarray
    transition_counts: np.ndarray
    log_likelihood: float
    n_sequences: int

    def __add__(self, other: "HMMStats") -> "HMMStats":
        if len(self.states) != len(other.states):
            raise ValueError("statistics of HMMs with different numbers of states")
        states = [b if a is None else a if b is None else a + b for a, b in zip(self.states, other.states)]
        return HMMStats(states, self.start_counts + other.start_counts,
                        self.transition_counts + other.transition_counts,
                        self.log_likelihood + other.log_likelihood, self.n_sequences + other.n_sequences)


class ConvergenceMonitor:
    """Training history in hmmlearn's ``ConvergenceMonitor`` shape (``model.monitor_``).

    Attributes
    ----------
    tol : float
        The model's tolerance (nats per frame here; absolute in hmmlearn).
    n_iter : int
        Maximum Baum-Welch iterations.
    history : list of float
        Total log-likelihood before each Baum-Welch M-step (hmmlearn keeps the last two).
    iter : int
        Baum-Welch iterations run at the final mixture size.
    converged : bool
        Whether training stopped because the improvement fell below the tolerance.
    """

    def __init__(self, tol: float, n_iter: int, history: Sequence[float], n_iter_run: int,
                 converged: bool) -> None:
        self.tol = tol
        self.n_iter = n_iter
        self.verbose = False
        self.history = list(history)
        self.iter = n_iter_run
        self.converged = converged

    def __repr__(self) -> str:
        return (f"ConvergenceMonitor(iter={self.iter}, n_iter={self.n_iter}, converged={self.converged}, "
                f"last={self.history[-1] if self.history else None})")


def _renamed_params(params: dict[str, Any]) -> dict[str, Any]:
    """Saved constructor parameters under today's names (``grow_iter`` is ``iter_per_split``
    in files written before the rename)."""
    if params.get("grow_iter") is not None and "iter_per_split" not in params:
        params["iter_per_split"] = params.pop("grow_iter")
    return params


def _log(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(p)


class GMMHMM(ParamsMixin):
    """Hidden Markov model with Gaussian-mixture emissions (the classic acoustic model).

    It speaks hmmlearn's interface as well as its own: ``fit(X, lengths)``,
    ``score(X, lengths)``, ``score_samples``, ``decode(X, lengths, algorithm=)``,
    ``predict``, ``predict_proba``, ``sample`` and the attributes ``startprob_``,
    ``transmat_``, ``weights_``, ``means_``, ``covars_`` (hmmlearn's ``GMMHMM`` shapes) and
    ``monitor_``; every method also takes a list of (T, D) sequences instead of
    ``X, lengths``. :meth:`from_hmmlearn` / :meth:`to_hmmlearn` convert fitted models.
    The number of states is ``n_states`` here (hmmlearn's ``n_components``) and the
    Gaussians per state ``n_components`` (hmmlearn's ``n_mix``), so ``GMMHMM(3, 2)`` means
    the same in both libraries.

    Parameters
    ----------
    n_states : int
        Number of emitting states (ignored when ``topology`` is a :class:`Topology`).
    n_components : int
        Gaussians per state.
    covariance_type : {"diag", "full", "spherical", "tied"}
        Covariance type of every state's mixture (any type the EM core supports; "tied"
        is tied *within* a state).
    topology : {"left-to-right", "ergodic"} or Topology
        Structure; the strings build ``Topology.left_to_right(n_states, n_skips)`` or
        ``Topology.ergodic(n_states)``.
    n_skips : int
        For "left-to-right": how many states a transition may skip.
    init : {"uniform", "flat"}
        "uniform": HTK HInit-style uniform segmentation, each state's mixture fitted on
        its segments; "flat": every state starts as the mixture of all frames (HCompV).
    n_iter : int
        Maximum Baum-Welch iterations.
    viterbi_iter : int
        Viterbi-training (segmental k-means) iterations run after initialisation and
        before Baum-Welch.
    tol : float
        Stop Baum-Welch when the total log-likelihood improves by less than
        ``tol * n_frames`` (i.e. ``tol`` nats per frame).
    reg_covar : float
        Added to variances in every M-step (passed to ``ml_update``).
    variance_floor : float or None
        Passed to ``ml_update`` (see the core's documentation).
    transition_floor : float
        Minimum probability of every *allowed* transition after each update (0: none).
        With ``fixed_topology=False`` the floor applies to every transition, so training
        may open transitions that the topology forbade.
    fixed_topology : bool
        Keep the topology's structural zeros when smoothing (default).
    init_max_iter : int
        EM iterations of the per-state GaussianMixture fits at initialisation.
    mixture_init : {"split", "kmeans", ...}
        ``init_params`` of those fits: "split" grows each state's mixture by binary
        splitting (HTK HHEd MU-style), "kmeans" clusters its frames.
    grow_mixtures : bool
        HTK-style mixing up: initialise with one Gaussian per state, and after every
        ``iter_per_split`` Baum-Welch iterations split each state's heaviest components (the
        core's ``split_components``, HHEd ``MU``), doubling up to ``n_components``; then
        run ``n_iter`` more iterations. Less prone to poor local optima than fitting each
        state's full mixture on its initial segment.
    iter_per_split : int
        Baum-Welch iterations at each mixture size below ``n_components`` (the glossary's
        name for the iterations after each split, as in ``GaussianMixture``).
    occupancy_threshold : float
        Frames whose occupancy of a state is at most this are left out of that state's
        statistics (each would add less than this to them). In a left-to-right model most
        frames are far from most states, so this skips about two thirds of the E-step
        work at an error below ``threshold * n_frames`` frames' worth; 0 is exact.
    random_state : int or None
        Seed for the initial mixture fits.
    grow_iter : int, optional
        Deprecated name of ``iter_per_split`` (DeprecationWarning when fitting; it wins
        when given).
    """

    def __init__(self, n_states: int = 5, n_components: int = 1, covariance_type: str = "diag",
                 topology: str | Topology = "left-to-right", n_skips: int = 0, init: str = "uniform",
                 n_iter: int = 10, viterbi_iter: int = 0, tol: float = 1e-4, reg_covar: float = 1e-6,
                 variance_floor: float | None = None, transition_floor: float = 0.0,
                 fixed_topology: bool = True, init_max_iter: int = 20, mixture_init: str = "split",
                 grow_mixtures: bool = False, iter_per_split: int = 4,
                 occupancy_threshold: float = 1e-10, random_state: int | None = 0,
                 grow_iter: int | None = None) -> None:
        self.n_states = n_states
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.topology = topology
        self.n_skips = n_skips
        self.init = init
        self.n_iter = n_iter
        self.viterbi_iter = viterbi_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.variance_floor = variance_floor
        self.transition_floor = transition_floor
        self.fixed_topology = fixed_topology
        self.init_max_iter = init_max_iter
        self.mixture_init = mixture_init
        self.occupancy_threshold = occupancy_threshold
        self.grow_mixtures = grow_mixtures
        self.iter_per_split = iter_per_split
        self.random_state = random_state
        self.grow_iter = grow_iter
        self.states_: list[GMM] | None = None

    # ================================================================== construction
    @classmethod
    def from_parameters(cls, states: Sequence[GMM], startprob: np.ndarray, transmat: np.ndarray,
                        final: np.ndarray | None = None, topology: Topology | None = None,
                        **params: Any) -> "GMMHMM":
        """A ready-to-use model from given parameters (no training).

        ``topology`` defaults to the structure of ``startprob``/``transmat`` themselves
        (their zeros become structural) with the given ``final`` states (default: all).
        """
        states = list(states)
        if topology is None:
            topology = Topology(startprob, transmat, final, name="given")
        if "n_components" in cls._get_param_names():
            params.setdefault("n_components", max(g.n_components for g in states))
        model = cls(n_states=topology.n_states, topology=topology, **params)
        model._set_parameters(states, np.asarray(startprob, float), np.asarray(transmat, float))
        return model

    def _topology(self) -> Topology:
        if isinstance(self.topology, Topology):
            return self.topology
        if self.topology in ("left-to-right", "left_to_right", "bakis"):
            return Topology.left_to_right(self.n_states, self.n_skips)
        if self.topology == "ergodic":
            return Topology.ergodic(self.n_states)
        raise ValueError(f"unknown topology {self.topology!r} (use 'left-to-right', 'ergodic' "
                         "or a Topology)")

    def _set_parameters(self, states: list[GMM], startprob: np.ndarray, transmat: np.ndarray) -> None:
        topo = self._topology()
        n_states = topo.n_states
        if len(states) != n_states:
            raise ValueError(f"{len(states)} state mixtures given for a topology of {n_states} states")
        dims = {g.n_features for g in states}
        if len(dims) != 1:
            raise ValueError(f"state mixtures have different dimensions {sorted(dims)}")
        if startprob.shape != (n_states,) or transmat.shape != (n_states, n_states):
            raise ValueError(f"startprob/transmat shapes {startprob.shape}/{transmat.shape} do not "
                             f"match {n_states} states")
        if np.any(startprob[~topo.start_mask] > 0) or np.any(transmat[~topo.transition_mask] > 0):
            if self.fixed_topology:
                raise ValueError("startprob/transmat put probability on transitions the topology forbids")
        self.states_ = list(states)
        self.startprob_ = startprob.copy()
        self.transmat_ = transmat.copy()
        self.topology_ = topo
        self.covariance_type = states[0].covariance_type
        self._prepare()

    def _prepare(self) -> None:
        """Cache what the kernels and the emission computation need after a parameter change."""
        self._log_start = _log(self.startprob_)
        self._log_final = np.where(self.topology_.final, 0.0, -np.inf)
        self._edges = K.edge_lists(_log(self.transmat_))
        states = self.states_
        sizes = {g.n_components for g in states}
        self._stacked: GMM | None = None
        if len(sizes) == 1 and states[0].covariance_type != "tied" and len(states) > 1:
            # One mixture holding every state's components, weights scaled by 1/S so they
            # sum to one: its log_joint is one matrix product for all states.
            self._stacked = GMM(
                np.concatenate([g.weights for g in states]) / len(states),
                np.concatenate([g.means for g in states]),
                np.concatenate([g.covariances for g in states]),
                covariance_type=states[0].covariance_type,
            )

    # ================================================================== properties
    @property
    def n_features(self) -> int:
        self._check_fitted()
        return self.states_[0].n_features

    def _check_fitted(self) -> None:
        if getattr(self, "states_", None) is None:
            raise RuntimeError(f"this {type(self).__name__} has no parameters yet: call fit() or "
                               "from_parameters()")

    def __sklearn_is_fitted__(self) -> bool:
        return getattr(self, "states_", None) is not None

    # hmmlearn's attribute names, read from the states' mixtures (GMMHMM shapes).
    @property
    def n_mix(self) -> int:
        """Gaussians per state (hmmlearn's name for ``n_components``)."""
        return self.states_[0].n_components if self.__sklearn_is_fitted__() else self.n_components

    @property
    def weights_(self) -> np.ndarray:
        """(n_states, n_mix) mixture weights of every state."""
        self._check_fitted()
        return np.stack([g.weights for g in self.states_])

    @property
    def means_(self) -> np.ndarray:
        """(n_states, n_mix, n_features) component means of every state."""
        self._check_fitted()
        return np.stack([g.means for g in self.states_])

    @property
    def covars_(self) -> np.ndarray:
        """Covariances in hmmlearn's GMMHMM shape: (n_states, n_mix) spherical,
        (n_states, n_mix, n_features) diag, (n_states, n_mix, n_features, n_features) full,
        (n_states, n_features, n_features) tied (tied within each state)."""
        self._check_fitted()
        return np.stack([g.covariances for g in self.states_])

    @property
    def monitor_(self) -> ConvergenceMonitor:
        """Baum-Welch history as hmmlearn's ``ConvergenceMonitor`` attributes."""
        self._check_fitted()
        return ConvergenceMonitor(self.tol, self.n_iter, getattr(self, "history_", []),
                                  getattr(self, "n_iter_", 0), getattr(self, "converged_", False))

    # ================================================================== emissions
    def log_emissions(self, X: np.ndarray) -> np.ndarray:
        """Emission log-likelihoods ``log b_s(x_t)`` of frames X (N, D) under every state: (N, S)."""
        self._check_fitted()
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"frames must have shape (N, {self.n_features}), got {X.shape}")
        return self._emissions(X)[0]

    def _emissions(self, X: np.ndarray, keep_joint: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Emission log-likelihoods (N, S) and, with ``keep_joint`` on the stacked path, the
        per-component log joints ``log w_sk + log N(x_t | s, k)`` (N, S*K) they came from
        (None when they would take more than ``_JOINT_ELEMENTS`` or the states cannot be
        stacked)."""
        n_states = len(self.states_)
        if self._stacked is None:
            return np.column_stack([g.score_samples(X) for g in self.states_]), None
        joint = np.ascontiguousarray(self._stacked.log_joint(X), dtype=np.float64)
        joint += np.log(n_states)  # undo the 1/S that made the stacked weights sum to one
        emit = K.segment_logsumexp(joint, n_states, self.states_[0].n_components)
        return emit, (joint if keep_joint and joint.size <= _JOINT_ELEMENTS else None)

    # ================================================================== inference
    def score_sequences(self, sequences: Sequence[np.ndarray]) -> np.ndarray:
        """Log-likelihood log p(X_n) of each sequence (forward algorithm), (n_seq,).

        A sequence that no path of the topology can explain (e.g. shorter than
        ``topology.min_frames`` in a left-to-right model that must end in its last state)
        gets ``-inf``.
        """
        X, offsets = check_sequences(sequences, self.n_features)
        return self.score_batch(X, offsets)

    def score_batch(self, X: np.ndarray, offsets: np.ndarray, viterbi: bool = False) -> np.ndarray:
        """Per-sequence scores of sequences already stacked by :func:`check_sequences`.

        Forward log-likelihoods, or best-path scores with ``viterbi=True``; -inf where no
        path explains a sequence. (The recogniser calls this once per word on all test
        frames, so the frames are validated and stacked only once.)
        """
        self._check_fitted()
        emit = self.log_emissions(X)
        e = self._edges
        if viterbi:
            return K.viterbi(self._log_start, self._log_final, e.pred_ptr, e.pred_src, e.pred_logp,
                             emit, offsets)[1]
        return K.forward_loglik(self._log_start, self._log_final, e.pred_ptr, e.pred_src, e.pred_logp,
                                emit, offsets)

    def score(self, X: np.ndarray | Sequence[np.ndarray], lengths: Sequence[int] | None = None) -> float:
        """Total log-likelihood of the sequences (forward algorithm), as hmmlearn's ``score``.

        ``X`` is one (T, D) sequence, a list of them, or all frames back to back with
        ``lengths``. A sequence no path of the topology explains contributes ``-inf``.
        """
        self._check_fitted()
        X_, offsets = stack_sequences(X, lengths, self.n_features)
        return float(self.score_batch(X_, offsets).sum())

    def _posteriors_batch(self, X: np.ndarray | Sequence[np.ndarray],
                          lengths: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        X_, offsets = stack_sequences(X, lengths, self.n_features)
        gamma, _, loglik = self._forward_backward(X_, offsets)
        if np.any(loglik == -np.inf):
            bad = int(np.flatnonzero(loglik == -np.inf)[0])
            raise NoPathError(f"sequence {bad}: " + self._no_path_message(int(np.diff(offsets)[bad])))
        return loglik, gamma

    def score_samples(self, X: np.ndarray | Sequence[np.ndarray],
                      lengths: Sequence[int] | None = None) -> tuple[float, np.ndarray]:
        """Total log-likelihood and state posteriors ``gamma[t, s]`` of every frame (hmmlearn).

        Returns
        -------
        log_prob : float
        posteriors : (N, n_states) array, the frames of all sequences back to back.

        Raises
        ------
        NoPathError
            If no path of the topology explains a sequence (names it).
        """
        loglik, gamma = self._posteriors_batch(X, lengths)
        return float(loglik.sum()), gamma

    def predict_proba(self, X: np.ndarray | Sequence[np.ndarray],
                      lengths: Sequence[int] | None = None) -> np.ndarray:
        """State posteriors ``p(q_t = s | X)`` of every frame, (N, n_states)."""
        return self._posteriors_batch(X, lengths)[1]

    def predict(self, X: np.ndarray | Sequence[np.ndarray], lengths: Sequence[int] | None = None) -> np.ndarray:
        """Viterbi state of every frame, (N,) (hmmlearn's ``predict``)."""
        return self.decode(X, lengths)[1]

    def posteriors(self, X: np.ndarray) -> tuple[float, np.ndarray]:
        """Log-likelihood and state occupancies ``gamma[t, s] = p(q_t = s | X)`` of one sequence.

        Raises
        ------
        NoPathError
            If no path of the topology explains the sequence.
        """
        X_, offsets = check_sequences([X], self.n_features)
        gamma, _, loglik = self._forward_backward(X_, offsets)
        if loglik[0] == -np.inf:
            raise NoPathError(self._no_path_message(X_.shape[0]))
        return float(loglik[0]), gamma

    def decode_sequences(self, sequences: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Viterbi: best path score and best state path of each sequence.

        A sequence with no path gets score -inf and a path of -1s.
        """
        X, offsets = check_sequences(sequences, self.n_features)
        path, score = self._viterbi(X, offsets)
        return score, [path[a:b] for a, b in zip(offsets[:-1], offsets[1:])]

    def decode(self, X: np.ndarray | Sequence[np.ndarray], lengths: Sequence[int] | None = None,
               algorithm: str = "viterbi") -> tuple[float, np.ndarray]:
        """Best state sequence, as hmmlearn's ``decode``.

        Parameters
        ----------
        X, lengths :
            One (T, D) sequence, a list of them, or frames back to back with ``lengths``.
        algorithm : {"viterbi", "map"}
            "viterbi": the single most probable path; ``log_prob`` is its total
            ``log p(X, path)``. "map": the most probable state of each frame on its own
            (argmax of the posteriors); ``log_prob`` is the sum of the log posteriors of the
            chosen states (hmmlearn 0.3 sums the posteriors themselves instead).

        Returns
        -------
        log_prob : float, summed over the sequences
        state_sequence : (N,) int array, the sequences back to back

        Raises
        ------
        NoPathError
            If no path of the topology explains a sequence.
        """
        if algorithm == "map":
            _, gamma = self._posteriors_batch(X, lengths)
            best = gamma.argmax(axis=1)
            with np.errstate(divide="ignore"):
                return float(np.log(gamma[np.arange(best.size), best]).sum()), best
        if algorithm != "viterbi":
            raise ValueError(f"algorithm must be 'viterbi' or 'map', got {algorithm!r}")
        self._check_fitted()
        X_, offsets = stack_sequences(X, lengths, self.n_features)
        path, score = self._viterbi(X_, offsets)
        if np.any(score == -np.inf):
            bad = int(np.flatnonzero(score == -np.inf)[0])
            message = self._no_path_message(int(np.diff(offsets)[bad]))
            raise NoPathError(message if score.size == 1 else f"sequence {bad}: {message}")
        return float(score.sum()), path

    def align_states(self, X: np.ndarray, state_sequence: Sequence[int]) -> tuple[float, np.ndarray]:
        """Forced alignment of X to a known sequence of states.

        Every listed state is visited, in order, for at least one frame (a state listed
        twice in a row is visited twice); the model's own start, transition and final
        probabilities score the path. This is the alignment used to cut training data
        into states when the transcription is known.

        Returns
        -------
        log_prob : float
            log p(X, best path) of the best such path.
        path : (T,) int array
            The *model* state of each frame.

        Raises
        ------
        ValueError
            If a listed state is out of range or a listed transition is forbidden.
        NoPathError
            If X has fewer frames than the state sequence (or no path otherwise).
        """
        self._check_fitted()
        seq = np.asarray(state_sequence, dtype=np.int64)
        n_states = len(self.states_)
        if seq.ndim != 1 or seq.size == 0:
            raise ValueError("state_sequence must be a non-empty 1-D sequence of state indices")
        if seq.min() < 0 or seq.max() >= n_states:
            raise ValueError(f"state_sequence holds states outside 0..{n_states - 1}")
        X_, offsets = check_sequences([X], self.n_features)
        if self.startprob_[seq[0]] == 0:
            raise ValueError(f"state_sequence starts in state {seq[0]}, where no sequence may start")
        n_pos = seq.size
        # Positions of a linear chain; position p emits with model state seq[p].
        chain = np.zeros((n_pos, n_pos))
        for p in range(n_pos):
            s = seq[p]
            if p + 1 < n_pos:
                nxt = seq[p + 1]
                if self.transmat_[s, nxt] == 0:
                    raise ValueError(f"state_sequence moves {s} -> {nxt}, a forbidden transition")
                # A repeated state must move on, not loop, to keep the positions distinct.
                chain[p, p + 1] = self.transmat_[s, nxt]
                if nxt != s:
                    chain[p, p] = self.transmat_[s, s]
            else:
                chain[p, p] = self.transmat_[s, s]
        start = np.full(n_pos, -np.inf)
        start[0] = self._log_start[seq[0]]
        final = np.full(n_pos, -np.inf)
        final[-1] = self._log_final[seq[-1]]
        emit = np.ascontiguousarray(self.log_emissions(X_)[:, seq])
        e = K.edge_lists(_log(chain))
        path, score = K.viterbi(start, final, e.pred_ptr, e.pred_src, e.pred_logp, emit, offsets)
        if score[0] == -np.inf:
            raise NoPathError(f"a sequence of {X_.shape[0]} frames cannot be aligned to "
                              f"{n_pos} states (each needs at least one frame)")
        return float(score[0]), seq[path]

    # ================================================================== sampling
    def sample(self, n_samples: int = 1,
               random_state: int | np.random.Generator | np.random.RandomState | None = None,
               currstate: int | None = None, max_tries: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """Draw one sequence of ``n_samples`` frames and its state path (hmmlearn's ``sample``).

        ``currstate`` fixes the state of the first frame (to continue a sequence drawn
        before). Paths that do not end in a final state are rejected and redrawn (at most
        ``max_tries`` times), so the sample follows the model conditioned on the length.
        ``random_state``: None, an int, a numpy Generator or a RandomState
        (:func:`speakergmm.mixture.init.check_random_state`).
        """
        self._check_fitted()
        n_frames = n_samples
        if int(n_frames) != n_frames or n_frames < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_frames!r}")
        n_frames = int(n_frames)
        rng = check_random_state(random_state)
        n_states = len(self.states_)
        if currstate is not None and not (0 <= int(currstate) < n_states):
            raise ValueError(f"currstate must be a state in 0..{n_states - 1}, got {currstate!r}")
        cum_trans = np.cumsum(self.transmat_, axis=1)
        for _ in range(max_tries):
            states = np.empty(n_frames, dtype=np.int64)
            states[0] = rng.choice(n_states, p=self.startprob_) if currstate is None else int(currstate)
            draws = rng.random(n_frames)
            for t in range(1, n_frames):  # sampling only: one draw per frame
                states[t] = min(int(np.searchsorted(cum_trans[states[t - 1]], draws[t], side="right")),
                                n_states - 1)
            if self.topology_.final[states[-1]]:
                break
        else:
            raise NoPathError(f"no path of {n_frames} frames ending in a final state was drawn "
                              f"in {max_tries} tries")
        X = np.empty((n_frames, self.n_features))
        for s in np.unique(states):
            where = np.flatnonzero(states == s)
            frames, _ = self.states_[s].sample(where.size, random_state=int(rng.integers(2**31)))
            X[where] = frames[rng.permutation(where.size)]  # the core may group by component
        return X, states

    # ================================================================== training
    def fit(self, X: np.ndarray | Sequence[np.ndarray], lengths: Sequence[int] | None = None, *,
            warm_start: bool = False) -> "GMMHMM":
        """Train: initialise, Viterbi training, Baum-Welch.

        ``X`` is a list of (T, D) sequences, one sequence, or (hmmlearn's convention) all
        frames back to back with ``lengths``; ``fit(X, lengths)`` and ``fit(list)`` train
        the same model. ``warm_start=True`` continues from the current parameters (no
        initialisation; hmmlearn's ``init_params=""``).
        Sets ``history_`` (total log-likelihood before each Baum-Welch M-step),
        ``viterbi_history_``, ``n_iter_`` and ``converged_``.

        Raises
        ------
        ValueError
            On empty sequences, mismatched dimensions or non-finite values.
        NoPathError
            If a sequence is too short for the topology (names the sequence).
        """
        warm = warm_start and getattr(self, "states_", None) is not None
        stacked = stack_sequences(X, lengths, self.states_[0].n_features if warm else None)
        with threadpool_limits(limits=BLAS_THREADS):
            return self._fit(stacked, warm_start)

    def _fit(self, stacked: tuple[np.ndarray, np.ndarray], warm_start: bool) -> "GMMHMM":
        topo = self._topology()
        X, offsets = stacked
        lengths = np.diff(offsets)
        short = np.flatnonzero(lengths < topo.min_frames)
        if short.size:
            raise NoPathError(f"sequence {short[0]} has {lengths[short[0]]} frames; the {topo.name} "
                              f"topology needs at least {int(topo.min_frames)}")
        warm = warm_start and getattr(self, "states_", None) is not None
        growing = self.grow_mixtures and not warm
        iter_per_split = self._iter_per_split() if growing else 0
        if not warm:
            self._initialise(X, offsets, topo, 1 if growing else self.n_components)
        self.viterbi_history_ = []
        for _ in range(self.viterbi_iter):
            self.viterbi_history_.append(self._viterbi_step(X, offsets))
        self.history_ = []
        self.split_points_ = []
        self.converged_ = False
        self.n_iter_ = 0
        while growing and max(g.n_components for g in self.states_) < self.n_components:
            # HTK mixing-up: train, then split every state's heaviest components, retrain.
            for _ in range(iter_per_split):
                self.history_.append(self._baum_welch_step(X, offsets))
            size = min(2 * self.states_[0].n_components, self.n_components)
            self.split_points_.append(len(self.history_))
            self._replace_states([split_components(g, size) for g in self.states_])
        # Baum-Welch on the EM driver: one fused step per iteration (E-step, then the states'
        # and transitions' update); hmmlearn's rule: converged when the total log-likelihood
        # gains less than tol per frame.
        result = iterate(self, EMHooks(step=lambda hmm: (hmm, hmm._baum_welch_step(X, offsets))),
                         max_iter=self.n_iter, tol=self.tol * X.shape[0], stop_when="small_gain")
        self.n_iter_, self.converged_ = result.n_iter, result.converged
        self.history_.extend(result.history)
        return self

    def _iter_per_split(self) -> int:
        """``iter_per_split``, or its deprecated name ``grow_iter`` when given (warns)."""
        name, value = "iter_per_split", self.iter_per_split
        if self.grow_iter is not None:
            warnings.warn(f"{type(self).__name__}(grow_iter=...) is deprecated: use iter_per_split",
                          DeprecationWarning, stacklevel=4)
            name, value = "grow_iter", self.grow_iter
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0; got {value!r}")
        return int(value)

    def _replace_states(self, states: list[GMM]) -> None:
        self.states_ = states
        self._prepare()

    def _initialise(self, X: np.ndarray, offsets: np.ndarray, topo: Topology, n_components: int) -> None:
        n_states = topo.n_states
        if self.init == "uniform":
            # HInit: frame t of a T-frame sequence belongs to state floor(t * S / T).
            labels = np.empty(X.shape[0], dtype=np.int64)
            for a, b in zip(offsets[:-1], offsets[1:]):
                labels[a:b] = (np.arange(b - a) * n_states) // (b - a)
            groups = [X[labels == s] for s in range(n_states)]
        elif self.init == "flat":
            groups = [X] * n_states
        else:
            raise ValueError(f"unknown init {self.init!r} (use 'uniform' or 'flat')")
        states = []
        fitted: dict[int, GMM] = {}
        for s, frames in enumerate(groups):
            key = id(frames)
            if key not in fitted:
                if frames.shape[0] < n_components:
                    raise ValueError(f"state {s} gets {frames.shape[0]} frames at initialisation, fewer "
                                     f"than its {n_components} mixture components")
                fitted[key] = self._fit_mixture(frames, n_components)
            states.append(fitted[key])
        self._set_parameters(states, topo.startprob.copy(), topo.transmat.copy())

    def _fit_mixture(self, frames: np.ndarray, n_components: int) -> GMM:
        gm = GaussianMixture(n_components=n_components, covariance_type=self.covariance_type,
                             reg_covar=self.reg_covar, max_iter=self.init_max_iter,
                             init_params=self.mixture_init, variance_floor=self.variance_floor,
                             random_state=self.random_state)
        with warnings.catch_warnings():
            # A state's starting mixture needs only a few EM iterations (init_max_iter);
            # Baum-Welch trains it from there, so not converging here is expected.
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(frames)
        return gm.gmm_

    def _forward_backward(self, X: np.ndarray, offsets: np.ndarray, emit: np.ndarray | None = None):
        if emit is None:
            emit = self.log_emissions(X)
        e = self._edges
        return K.forward_backward(self._log_start, self._log_final, e.pred_ptr, e.pred_src, e.pred_logp,
                                  e.succ_ptr, e.succ_dst, e.succ_logp, emit, offsets)

    def _viterbi(self, X: np.ndarray, offsets: np.ndarray):
        emit = self.log_emissions(X)
        e = self._edges
        return K.viterbi(self._log_start, self._log_final, e.pred_ptr, e.pred_src, e.pred_logp, emit, offsets)

    def _baum_welch_step(self, X: np.ndarray, offsets: np.ndarray) -> float:
        """One E-step and M-step; returns the total log-likelihood under the old parameters."""
        stats = self._accumulate(X, offsets)
        new_states = []
        for gmm, state_stats in zip(self.states_, stats.states):
            if state_stats is None:  # a state no path visits keeps its mixture
                new_states.append(gmm)
                continue
            new_states.append(ml_update(state_stats, reg_covar=self.reg_covar,
                                        variance_floor=self.variance_floor, previous=gmm))
        self._m_step_transitions(new_states, stats.start_counts, stats.transition_counts)
        return stats.log_likelihood

    def _accumulate(self, X: np.ndarray, offsets: np.ndarray) -> "HMMStats":
        """The Baum-Welch E-step: every state's mixture statistics and the transition counts."""
        emit, joint = self._emissions(X, keep_joint=True)
        gamma, xi, loglik = self._forward_backward(X, offsets, emit)
        if np.any(loglik == -np.inf):
            bad = int(np.flatnonzero(loglik == -np.inf)[0])
            raise NoPathError(f"sequence {bad}: no state path explains it (likelihood 0)")
        n_states = len(self.states_)
        start_counts = gamma[offsets[:-1]].sum(axis=0)
        trans_counts = np.zeros((n_states, n_states))
        trans_counts[self._edges.succ_src, self._edges.succ_dst] = xi.sum(axis=0)
        if joint is not None:
            all_stats = self._stacked_statistics(X, joint, emit, gamma)
        else:
            all_stats = self._per_state_statistics(X, gamma)
        return HMMStats(all_stats, start_counts, trans_counts, float(loglik.sum()), int(offsets.size - 1))

    def accumulate(self, X: np.ndarray | Sequence[np.ndarray], lengths: Sequence[int] | None = None) -> "HMMStats":
        """Baum-Welch statistics of sequences under the current parameters (the E-step).

        Each state's :class:`~speakergmm.mixture.SufficientStats` (its mixture's frames
        weighted by the state's occupancy), the expected start and transition counts and
        the total log-likelihood. Statistics of several batches add up (``+``); they feed
        any update: ``ml_update`` (training), ``map_update`` (:meth:`adapt_map`) or a
        shared transform (:func:`speakergmm.hmm.adaptation.estimate_mllr`).

        Raises
        ------
        NoPathError
            If no path of the topology explains a sequence.
        """
        self._check_fitted()
        X_, offsets = stack_sequences(X, lengths, self.n_features)
        with threadpool_limits(limits=BLAS_THREADS):
            return self._accumulate(X_, offsets)

    def adapt_map(self, X: np.ndarray | Sequence[np.ndarray], lengths: Sequence[int] | None = None,
                  relevance_factor: float = 16.0, adapt: str = "m",
                  stats: "HMMStats | None" = None) -> "GMMHMM":
        """A copy adapted to the sequences by MAP (Reynolds' relevance-factor update per state).

        Each state's mixture is the prior of :func:`~speakergmm.mixture.map_update` with the
        state's Baum-Welch statistics (``stats``, or those of ``X``); transitions are kept.
        A state the data does not visit keeps its mixture. This is how a word model is
        moved towards a new speaker.
        """
        self._check_fitted()
        if stats is None:
            stats = self.accumulate(X, lengths)
        states = [gmm if st is None else map_update(st, gmm, relevance_factor=relevance_factor, adapt=adapt)
                  for gmm, st in zip(self.states_, stats.states)]
        return self.with_states(states)

    def with_states(self, states: Sequence[GMM]) -> "GMMHMM":
        """A copy with other state mixtures (same structure, transitions and parameters)."""
        self._check_fitted()
        model = copy.copy(self)
        model._set_parameters(list(states), self.startprob_, self.transmat_)
        return model

    def _per_state_statistics(self, X: np.ndarray, gamma: np.ndarray) -> list[SufficientStats | None]:
        """Each state's mixture accumulates the frames weighted by its occupancy (its E-step)."""
        out: list[SufficientStats | None] = []
        for s, gmm in enumerate(self.states_):
            weight = gamma[:, s]
            used = weight > self.occupancy_threshold
            out.append(gmm.e_step(X[used], sample_weight=weight[used])[1] if used.any() else None)
        return out

    def _stacked_statistics(self, X: np.ndarray, joint: np.ndarray, emit: np.ndarray,
                            gamma: np.ndarray) -> list[SufficientStats | None]:
        """The same statistics as :meth:`_per_state_statistics`, for all states at once.

        The emissions already needed every component's log joint; turned into
        ``gamma_s(t) p(k | x_t, s)`` in place, one call of the core's
        ``stats_from_responsibilities`` accumulates every component of every state
        (two matrix products for diagonal covariances) instead of S separate E-steps.
        """
        n_states, n_comp = gamma.shape[1], self.states_[0].n_components
        resp = K.occupancy_weighted_responsibilities(joint, emit, gamma, n_comp)
        stacked = stats_from_responsibilities(X, resp, None, self.covariance_type)
        out: list[SufficientStats | None] = []
        for s in range(n_states):
            occupancy = float(gamma[:, s].sum())
            if occupancy <= 0.0:
                out.append(None)
                continue
            part = slice(s * n_comp, (s + 1) * n_comp)
            # Sliced about the stacked statistics' shift (centred moments; see SufficientStats).
            out.append(SufficientStats(self.covariance_type, stacked.zeroth[part],
                                       stacked.centred_first[part], stacked.centred_second[part],
                                       float(np.dot(gamma[:, s], emit[:, s])), occupancy,
                                       shift=stacked.shift))
        return out

    def _viterbi_step(self, X: np.ndarray, offsets: np.ndarray) -> float:
        """One round of Viterbi training; returns the total best-path log-probability."""
        path, score = self._viterbi(X, offsets)
        if np.any(score == -np.inf):
            bad = int(np.flatnonzero(score == -np.inf)[0])
            raise NoPathError(f"sequence {bad}: no state path explains it (likelihood 0)")
        n_states = len(self.states_)
        start_counts = np.bincount(path[offsets[:-1]], minlength=n_states).astype(float)
        # Transitions inside sequences only: drop the pair that straddles two sequences.
        inside = np.ones(X.shape[0] - 1, dtype=bool)
        inside[offsets[1:-1] - 1] = False
        pairs = path[:-1][inside] * n_states + path[1:][inside]
        trans_counts = np.bincount(pairs, minlength=n_states * n_states).reshape(n_states, n_states)
        new_states = []
        for s, gmm in enumerate(self.states_):
            frames = X[path == s]
            if frames.shape[0] == 0:
                new_states.append(gmm)
                continue
            _, stats = gmm.e_step(frames)
            new_states.append(ml_update(stats, reg_covar=self.reg_covar,
                                        variance_floor=self.variance_floor, previous=gmm))
        # Hard counts can be zero on an allowed edge (a state held for exactly one frame in
        # every sequence); in log space that zero would be permanent, so keep it open.
        self._m_step_transitions(new_states, start_counts, trans_counts.astype(float),
                                 floor=max(self.transition_floor, VITERBI_TRANSITION_FLOOR))
        return float(score.sum())

    def _m_step_transitions(self, new_states: list[GMM], start_counts: np.ndarray,
                            trans_counts: np.ndarray, floor: float | None = None) -> None:
        startprob = start_counts / start_counts.sum()
        row_sums = trans_counts.sum(axis=1, keepdims=True)
        # A state never left (no counts) keeps its previous row.
        transmat = np.where(row_sums > 0, trans_counts / np.where(row_sums > 0, row_sums, 1.0),
                            self.transmat_)
        floor = self.transition_floor if floor is None else floor
        if floor > 0:
            allowed = self.topology_.transition_mask if self.fixed_topology else np.ones_like(transmat, bool)
            transmat = np.where(allowed, np.maximum(transmat, floor), 0.0)
            transmat /= transmat.sum(axis=1, keepdims=True)
        self.states_ = new_states
        self.startprob_ = startprob
        self.transmat_ = transmat
        self._prepare()

    # ================================================================== persistence
    def to_arrays(self, prefix: str = "") -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Plain arrays and JSON metadata (for model files, also embedded in recognisers)."""
        self._check_fitted()
        arrays = {
            f"{prefix}startprob": self.startprob_,
            f"{prefix}transmat": self.transmat_,
            f"{prefix}topology_startprob": self.topology_.startprob,
            f"{prefix}topology_transmat": self.topology_.transmat,
            f"{prefix}topology_final": self.topology_.final,
        }
        for s, gmm in enumerate(self.states_):
            for key, value in gmm.to_arrays().items():
                arrays[f"{prefix}state{s}.{key}"] = value
        meta = {"n_states": len(self.states_), "topology": self.topology_.name,
                "covariance_type": self.covariance_type,
                "params": self.json_params()}
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any], prefix: str = "") -> "GMMHMM":
        """Inverse of :meth:`to_arrays`."""
        n_states = int(meta["n_states"])
        topo = Topology(arrays[f"{prefix}topology_startprob"], arrays[f"{prefix}topology_transmat"],
                        arrays[f"{prefix}topology_final"], name=str(meta.get("topology", "custom")))
        states = []
        for s in range(n_states):
            head = f"{prefix}state{s}."
            states.append(GMM.from_arrays({k[len(head):]: v for k, v in arrays.items() if k.startswith(head)}))
        names = set(cls._get_param_names()) - {"topology", "n_states"}
        params = _renamed_params(dict(meta.get("params", {})))
        params = {k: v for k, v in params.items() if k in names}
        model = cls(n_states=n_states, topology=topo, **params)
        model._set_parameters(states, np.asarray(arrays[f"{prefix}startprob"], float),
                              np.asarray(arrays[f"{prefix}transmat"], float))
        return model

    def save(self, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> None:
        """Save as a plain versioned model file (format ``speakergmm.GMMHMM`` v1), atomically."""
        arrays, model_meta = self.to_arrays()
        save_model_file(path, FORMAT, VERSION, arrays, {**model_meta, "user": dict(meta or {})})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "GMMHMM":
        """Load a file written by :meth:`save`; refuses corrupt or other-format/version files."""
        arrays, meta, _ = load_model_file(path, FORMAT, (VERSION,),
                                          required=("startprob", "transmat", "topology_final"))
        try:
            return cls.from_arrays(arrays, meta)
        except (KeyError, ValueError, TypeError) as exc:
            from speakergmm.io import ModelFileError

            raise ModelFileError(f"{path}: corrupt {FORMAT} file ({exc})") from exc

    # ================================================================== helpers
    def json_params(self) -> dict[str, Any]:
        """Constructor parameters as plain data (for model files and results): a
        :class:`Topology` is given by its name (its arrays travel with the model)."""
        params = self.get_params(deep=False)
        params["topology"] = self.topology.name if isinstance(self.topology, Topology) else self.topology
        return params

    def _no_path_message(self, n_frames: int) -> str:
        return (f"no state path explains a sequence of {n_frames} frames under the "
                f"{self.topology_.name} topology (it needs at least "
                f"{int(self.topology_.min_frames)} frames)")

    # ================================================================== hmmlearn
    @classmethod
    def from_hmmlearn(cls, model: Any, **params: Any) -> "GMMHMM":
        """A GMMHMM with the parameters of a fitted ``hmmlearn.hmm.GMMHMM`` or ``GaussianHMM``.

        The topology is the structure of its ``startprob_`` / ``transmat_`` (their zeros
        become structural), with every state final (hmmlearn's convention), so every
        method gives hmmlearn's results. ``n_iter`` is copied; ``params`` override any
        constructor parameter (e.g. ``reg_covar``).
        """
        cov = model.covariance_type
        n_states = int(model.n_components)
        if hasattr(model, "n_mix"):  # GMMHMM: parameters already per state and component
            weights, means, covars = model.weights_, model.means_, model.covars_
        else:  # GaussianHMM: one Gaussian per state, hmmlearn's internal covariance shapes
            weights = np.ones((n_states, 1))
            means = np.asarray(model.means_)[:, None, :]
            internal = np.asarray(model._covars_)
            covars = {"spherical": lambda c: c[:, None], "diag": lambda c: c[:, None, :],
                      "full": lambda c: c[:, None], "tied": lambda c: np.repeat(c[None, None], n_states, 0)
                      }[cov](internal)
            if cov == "tied":  # shared by all states there; a full covariance per state here
                cov = "full"
        states = [GMM(weights[s], means[s], covars[s], covariance_type=cov) for s in range(n_states)]
        topology = Topology(model.startprob_, model.transmat_, None, name="from hmmlearn")
        params.setdefault("n_iter", int(model.n_iter))
        params.setdefault("covariance_type", cov)
        return cls.from_parameters(states, model.startprob_, model.transmat_, topology=topology, **params)

    def to_hmmlearn(self) -> Any:
        """The same model as an ``hmmlearn.hmm.GMMHMM`` (``init_params=""``, so fitting it
        continues from these parameters).

        hmmlearn's models may end in any state: for a topology with final states (a
        left-to-right word model) its likelihoods differ from ours.
        """
        from hmmlearn.hmm import GMMHMM as HmmlearnGMMHMM

        self._check_fitted()
        model = HmmlearnGMMHMM(n_components=len(self.states_), n_mix=self.n_mix,
                               covariance_type=self.covariance_type, n_iter=self.n_iter,
                               init_params="")
        model.n_features = self.n_features
        model.startprob_ = self.startprob_.copy()
        model.transmat_ = self.transmat_.copy()
        model.weights_ = self.weights_
        model.means_ = self.means_
        model.covars_ = self.covars_
        return model



class GaussianHMM(GMMHMM):
    """HMM with one Gaussian per state: :class:`GMMHMM` with ``n_components=1`` and hmmlearn's
    ``GaussianHMM`` attribute shapes (``means_`` (n_states, n_features), ``covars_`` as full
    matrices (n_states, n_features, n_features) whatever the covariance type).

    ``covariance_type`` is "diag", "full" or "spherical"; hmmlearn's "tied" (one matrix
    shared by all states) has no counterpart here (use "full"). The other parameters are
    :class:`GMMHMM`'s.
    """

    def __init__(self, n_states: int = 5, covariance_type: str = "diag",
                 topology: str | Topology = "left-to-right", n_skips: int = 0, init: str = "uniform",
                 n_iter: int = 10, viterbi_iter: int = 0, tol: float = 1e-4, reg_covar: float = 1e-6,
                 variance_floor: float | None = None, transition_floor: float = 0.0,
                 fixed_topology: bool = True, init_max_iter: int = 20,
                 occupancy_threshold: float = 1e-10, random_state: int | None = 0) -> None:
        super().__init__(n_states=n_states, n_components=1, covariance_type=covariance_type,
                         topology=topology, n_skips=n_skips, init=init, n_iter=n_iter,
                         viterbi_iter=viterbi_iter, tol=tol, reg_covar=reg_covar,
                         variance_floor=variance_floor, transition_floor=transition_floor,
                         fixed_topology=fixed_topology, init_max_iter=init_max_iter,
                         occupancy_threshold=occupancy_threshold, random_state=random_state)

    def _fit(self, stacked: tuple[np.ndarray, np.ndarray], warm_start: bool) -> "GMMHMM":
        if self.covariance_type == "tied":
            raise ValueError("covariance_type 'tied' (one matrix shared by all states) is not "
                             "supported by GaussianHMM; use 'full'")
        return super()._fit(stacked, warm_start)

    @property
    def means_(self) -> np.ndarray:
        """(n_states, n_features) state means."""
        self._check_fitted()
        return np.concatenate([g.means for g in self.states_])

    @property
    def covars_(self) -> np.ndarray:
        """(n_states, n_features, n_features) state covariances as full matrices (hmmlearn)."""
        self._check_fitted()
        out = []
        for g in self.states_:
            c = g.covariances
            if g.covariance_type == "spherical":
                c = np.eye(g.n_features) * c[0]
            elif g.covariance_type == "diag":
                c = np.diag(c[0])
            elif g.covariance_type == "full":
                c = c[0]
            out.append(c)
        return np.stack(out)

    def to_hmmlearn(self) -> Any:
        """The same model as an ``hmmlearn.hmm.GaussianHMM`` (``init_params=""``)."""
        from hmmlearn.hmm import GaussianHMM as HmmlearnGaussianHMM

        self._check_fitted()
        model = HmmlearnGaussianHMM(n_components=len(self.states_), covariance_type=self.covariance_type,
                                    n_iter=self.n_iter, init_params="")
        model.n_features = self.n_features
        model.startprob_ = self.startprob_.copy()
        model.transmat_ = self.transmat_.copy()
        model.means_ = self.means_
        internal = np.stack([g.covariances for g in self.states_])
        model.covars_ = {"spherical": lambda c: c[:, 0], "diag": lambda c: c[:, 0],
                         "full": lambda c: c[:, 0]}[self.covariance_type](internal)
        return model
