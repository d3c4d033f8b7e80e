"""speakergmm: classical speaker recognition and speech modelling on one fast EM core."""

__version__ = "0.1.0"

from speakergmm.mixture import BayesianGaussianMixture, GaussianMixture  # noqa: E402

__all__ = ["BayesianGaussianMixture", "GaussianMixture", "__version__"]
