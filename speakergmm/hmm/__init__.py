"""GMM-HMM acoustic models on the shared EM core, and an isolated-word recogniser.

- :class:`Topology`: structure (left-to-right with skips, ergodic, custom) and final states.
- :class:`GMMHMM`: HMM with Gaussian-mixture states; Baum-Welch (log space), Viterbi
  training, HTK-style uniform-segmentation / flat-start initialisation, Viterbi decoding,
  forced alignment, sampling, plain versioned model files.
- :class:`WordRecognizer`: one GMMHMM per word, batched scoring, priors, save/load.
- :mod:`speakergmm.hmm.plots`: alignment-over-spectrogram figures (confusion matrices:
  :func:`speakergmm.plotting.plot_confusion_matrix`).

The hot loops (forward-backward, Viterbi) are numba kernels in :mod:`speakergmm.hmm._kernels`.
"""

from speakergmm.hmm.model import (GMMHMM, ConvergenceMonitor, GaussianHMM, HMMStats, NoPathError,
                                    check_sequences, stack_sequences)
from speakergmm.hmm.recognizer import WordRecognizer
from speakergmm.hmm.topology import Topology, TopologyError

__all__ = ["ConvergenceMonitor", "GMMHMM", "GaussianHMM", "HMMStats", "NoPathError", "Topology", "TopologyError",
           "WordRecognizer", "check_sequences", "stack_sequences"]
