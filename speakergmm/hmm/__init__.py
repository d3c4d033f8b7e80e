"""GMM-HMM acoustic models on the shared EM core, and an isolated-word recogniser.

- :class:`Topology`: structure (left-to-right with skips, ergodic, custom) and final states.
- :class:`GMMHMM`: HMM with Gaussian-mixture states; Baum-Welch (log space), Viterbi
  training, HTK-style uniform-segmentation / flat-start initialisation, Viterbi decoding,
  forced alignment, sampling, plain versioned model files.
  Also hmmlearn's interface (``fit(X, lengths)``, ``score_samples``, ``decode``,
  ``predict``, ``means_``, ..., ``from_hmmlearn`` / ``to_hmmlearn``); :class:`GaussianHMM`
  is its one-Gaussian-per-state form; :meth:`GMMHMM.accumulate` gives the Baum-Welch
  statistics (:class:`HMMStats`) for training or adaptation.
- :class:`WordRecognizer`: one copy of a word model per word, batched scoring, priors,
  unsupervised speaker adaptation (``adapt``), save/load.
- :mod:`speakergmm.hmm.adaptation`: MLLR, speaker CMVN, VTLN (MAP: ``GMMHMM.adapt_map``).
- :mod:`speakergmm.hmm.connected`: connected-word decoding (token passing, word loop).
- :mod:`speakergmm.hmm.scoring`: word error rate by alignment.
- :mod:`speakergmm.hmm.plots`: alignment-over-spectrogram figures, technique comparisons
  (confusion matrices: :func:`speakergmm.plotting.plot_confusion_matrix`).

The hot loops (forward-backward, Viterbi) are numba kernels in :mod:`speakergmm.hmm._kernels`.
"""

from speakergmm.hmm.model import (GMMHMM, ConvergenceMonitor, GaussianHMM, HMMStats, NoPathError,
                                    check_sequences, stack_sequences)
from speakergmm.hmm.recognizer import WordRecognizer
from speakergmm.hmm.topology import Topology, TopologyError

__all__ = ["ConvergenceMonitor", "GMMHMM", "GaussianHMM", "HMMStats", "NoPathError", "Topology", "TopologyError",
           "WordRecognizer", "check_sequences", "stack_sequences"]
