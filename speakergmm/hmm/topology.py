"""HMM topologies: which transitions exist, where a sequence may start and end.

A topology fixes the *structure* of an HMM: the allowed transitions (non-zero entries of
the transition matrix), the allowed start states and the allowed final states. Its
probabilities are only starting values for training. Baum-Welch in log space never turns
a structural zero into a non-zero (the kernels do not even visit forbidden edges), and
the trainer's smoothing floors only the allowed entries when the topology is fixed.

Classic speech topologies:

- **left-to-right** (Bakis): each state loops on itself or moves forward by one state, or
  by up to ``1 + n_skips`` states with skips; a sequence starts in the first state and, by
  default, must end in the last (as an HTK word model must leave through its exit state),
  so a strict left-to-right model of S states cannot explain fewer than S frames.
- **ergodic**: every state may follow every state, start and end anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Topology", "TopologyError"]


class TopologyError(ValueError):
    """An impossible or inconsistent topology (probabilities, shapes, unreachable ends)."""


@dataclass(frozen=True, eq=False)
class Topology:
    """Structure and starting probabilities of an HMM.

    Parameters
    ----------
    startprob : (S,) array
        Initial start probabilities; zeros are structural (never start there).
    transmat : (S, S) array
        Initial transition probabilities, rows summing to 1; zeros are structural.
    final : (S,) bool array, optional
        States a sequence may end in. Default: every state.
    name : str
        Human-readable description (saved with models).
    """

    startprob: np.ndarray
    transmat: np.ndarray
    final: np.ndarray | None = None
    name: str = "custom"

    def __post_init__(self) -> None:
        start = np.array(self.startprob, dtype=np.float64)
        trans = np.array(self.transmat, dtype=np.float64)
        if start.ndim != 1 or start.size == 0:
            raise TopologyError(f"startprob must be a non-empty 1-D array, got shape {start.shape}")
        n_states = start.size
        if trans.shape != (n_states, n_states):
            raise TopologyError(
                f"transmat must have shape ({n_states}, {n_states}) to match startprob, got {trans.shape}")
        final = np.ones(n_states, dtype=bool) if self.final is None else np.array(self.final, dtype=bool)
        if final.shape != (n_states,):
            raise TopologyError(f"final must have shape ({n_states},), got {final.shape}")
        for label, arr in (("startprob", start), ("transmat", trans)):
            if not np.all(np.isfinite(arr)) or np.any(arr < 0):
                raise TopologyError(f"{label} must hold finite non-negative probabilities")
        if not np.isclose(start.sum(), 1.0, atol=1e-8):
            raise TopologyError(f"startprob must sum to 1, sums to {start.sum():.6g}")
        row_sums = trans.sum(axis=1)
        bad = np.flatnonzero(~np.isclose(row_sums, 1.0, atol=1e-8))
        if bad.size:
            raise TopologyError(f"transmat row {bad[0]} sums to {row_sums[bad[0]]:.6g}, not 1")
        if not final.any():
            raise TopologyError("at least one state must be final")
        for name_, arr in (("startprob", start), ("transmat", trans), ("final", final)):
            arr.setflags(write=False)
            object.__setattr__(self, name_, arr)
        if not np.isfinite(self.min_frames):
            raise TopologyError("no final state can be reached from a start state")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def left_to_right(cls, n_states: int, n_skips: int = 0, self_loop: float = 0.6,
                      end: str = "last") -> "Topology":
        """Left-to-right (Bakis) topology.

        Parameters
        ----------
        n_states : int
        n_skips : int
            How many states a transition may jump over (0: strictly to the next state).
        self_loop : float
            Starting self-loop probability; the rest is shared equally among the forward
            moves (the last state loops with probability 1).
        end : {"last", "any"}
            ``"last"``: sequences must end in the last state (HTK word models; a sequence
            shorter than the shortest path then has likelihood 0). ``"any"``: anywhere
            (hmmlearn's convention).
        """
        n_states = _positive_int(n_states, "n_states")
        if int(n_skips) != n_skips or n_skips < 0:
            raise TopologyError(f"n_skips must be a non-negative integer, got {n_skips!r}")
        if not 0.0 < self_loop < 1.0:
            raise TopologyError(f"self_loop must be in (0, 1), got {self_loop!r}")
        if end not in ("last", "any"):
            raise TopologyError(f"end must be 'last' or 'any', got {end!r}")
        trans = np.zeros((n_states, n_states))
        for i in range(n_states):
            targets = np.arange(i + 1, min(n_states, i + 2 + int(n_skips)))
            if targets.size == 0:
                trans[i, i] = 1.0
            else:
                trans[i, i] = self_loop
                trans[i, targets] = (1.0 - self_loop) / targets.size
        start = np.zeros(n_states)
        start[0] = 1.0
        final = np.zeros(n_states, dtype=bool)
        if end == "last":
            final[-1] = True
        else:
            final[:] = True
        name = f"left-to-right({n_states} states, {int(n_skips)} skips, end={end})"
        return cls(start, trans, final, name)

    @classmethod
    def ergodic(cls, n_states: int, self_loop: float | None = None) -> "Topology":
        """Fully connected topology, uniform start, any final state.

        ``self_loop`` (optional) sets the starting self-loop probability; otherwise all
        transitions start uniform. Training from a perfectly symmetric start cannot break
        the symmetry between states: initialise the emissions differently (the trainer's
        ``init="kmeans"`` / ``"uniform"`` does).
        """
        n_states = _positive_int(n_states, "n_states")
        if self_loop is None or n_states == 1:
            trans = np.full((n_states, n_states), 1.0 / n_states)
        else:
            if not 0.0 < self_loop < 1.0:
                raise TopologyError(f"self_loop must be in (0, 1), got {self_loop!r}")
            trans = np.full((n_states, n_states), (1.0 - self_loop) / (n_states - 1))
            np.fill_diagonal(trans, self_loop)
        return cls(np.full(n_states, 1.0 / n_states), trans, None, f"ergodic({n_states} states)")

    # ------------------------------------------------------------------ properties
    @property
    def n_states(self) -> int:
        return int(self.startprob.size)

    @property
    def transition_mask(self) -> np.ndarray:
        """(S, S) bool: the transitions that exist."""
        return self.transmat > 0

    @property
    def start_mask(self) -> np.ndarray:
        """(S,) bool: the states a sequence may start in."""
        return self.startprob > 0

    @property
    def is_left_to_right(self) -> bool:
        """True when no transition goes backwards (upper-triangular transition mask)."""
        return not np.any(np.tril(self.transition_mask, k=-1))

    @property
    def min_frames(self) -> float:
        """Fewest frames of any path from a start state to a final state (inf: none).

        A sequence shorter than this has likelihood 0 under any HMM of this topology.
        """
        dist = np.where(self.start_mask, 1.0, np.inf)
        mask = self.transition_mask
        for _ in range(self.n_states):  # Bellman-Ford with unit edge lengths
            reached = np.where(mask, dist[:, None] + 1.0, np.inf).min(axis=0)
            new = np.minimum(dist, reached)
            if np.array_equal(new, dist):
                break
            dist = new
        return float(dist[self.final].min())

    def to_dict(self) -> dict:
        """Plain-data description (for JSON results and model-file metadata)."""
        return {"name": self.name, "n_states": self.n_states,
                "min_frames": self.min_frames, "left_to_right": self.is_left_to_right}


def _positive_int(value: int, label: str) -> int:
    if int(value) != value or value < 1:
        raise TopologyError(f"{label} must be a positive integer, got {value!r}")
    return int(value)
