"""speakergmm: classical speaker recognition and speech modelling on one fast EM core."""

__version__ = "0.1.0"

from speakergmm.mixture import (  # noqa: E402
    BayesianGaussianMixture,
    DensityAnomalyDetector,
    GaussianMixture,
    select_mixture,
)

__all__ = ["BayesianGaussianMixture", "DensityAnomalyDetector", "GaussianMixture",
           "select_mixture", "__version__"]
