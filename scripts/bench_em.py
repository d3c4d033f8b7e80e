#!/usr/bin/env python
"""EM speed and memory: speakergmm vs scikit-learn, side by side in one run.

Deterministic synthetic data (drawn from a random mixture with a fixed seed); both
libraries start from identical parameters and run the same number of EM iterations.
Reported per case: seconds per EM iteration (the difference between runs of 1 and
1 + n iterations, so initialisation is excluded), peak traced memory during EM, the final
mean log-likelihood of both (they must match), and for ``diag`` the share of this
machine's matrix-multiply peak (float64 GEMM of the E-step's shape) that our E-step reaches.

Prints one JSON line on stdout; a readable table on stderr.

    python scripts/bench_em.py            # the issue's sizes (about 2 minutes)
    python scripts/bench_em.py --quick    # small sizes, for a smoke test
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
import warnings

import numpy as np


def make_data(n_samples: int, n_features: int, n_clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(n_clusters, n_features))
    scales = rng.uniform(0.5, 2.0, size=(n_clusters, n_features))
    labels = rng.integers(n_clusters, size=n_samples)
    return centres[labels] + rng.standard_normal((n_samples, n_features)) * scales[labels]


def initial_parameters(X: np.ndarray, n_components: int, covariance_type: str, seed: int) -> dict:
    rng = np.random.default_rng(seed + 1)
    means = X[rng.choice(X.shape[0], n_components, replace=False)]
    var = X.var(axis=0)
    D = X.shape[1]
    precisions = {"diag": np.tile(1 / var, (n_components, 1)),
                  "full": np.tile(np.diag(1 / var), (n_components, 1, 1)),
                  "tied": np.diag(1 / var),
                  "spherical": np.full(n_components, D / var.sum())}[covariance_type]
    return dict(weights_init=np.full(n_components, 1 / n_components), means_init=means,
                precisions_init=precisions)


def timed_fit(make, X: np.ndarray, n_iter: int) -> tuple[float, float, float]:
    """(seconds per iteration, peak MiB during the longer fit, final lower bound)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        make(1).fit(X)
        t1 = time.perf_counter()
        tracemalloc.start()
        t2 = time.perf_counter()
        model = make(1 + n_iter).fit(X)
        t3 = time.perf_counter()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    per_iter = ((t3 - t2) - (t1 - t0)) / n_iter
    return per_iter, peak / 2**20, float(model.lower_bound_)


def gemm_peak_gflops(n: int, k: int, m: int, dtype=np.float64, repeats: int = 5) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, k)).astype(dtype)
    b = rng.standard_normal((k, m)).astype(dtype)
    a @ b
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2.0 * n * k * m / best / 1e9


def estep_share_of_peak(X: np.ndarray, init: dict, n_components: int) -> dict:
    """Time the diag E-step alone and relate its matrix-product FLOPs to the GEMM peak."""
    from speakergmm.mixture import GMM

    gmm = GMM.from_precisions(init["weights_init"], init["means_init"], init["precisions_init"], "diag")
    gmm.e_step(X[:10000])
    best = np.inf
    for _ in range(3):
        t = time.perf_counter()
        gmm.e_step(X)
        best = min(best, time.perf_counter() - t)
    N, D = X.shape
    flops = 2 * (2.0 * N * (2 * D) * n_components)  # log-densities and statistics products
    rows = gmm._chunk_rows()
    peak = gemm_peak_gflops(rows, 2 * D, n_components)
    achieved = flops / best / 1e9
    return {"estep_seconds": best, "estep_gemm_gflops": achieved,
            "gemm_peak_gflops_same_shape": peak, "share_of_gemm_peak": achieved / peak}


def run_case(name: str, X: np.ndarray, n_components: int, covariance_type: str, n_iter: int,
             seed: int) -> dict:
    from sklearn.mixture import GaussianMixture as SklearnGMM

    from speakergmm import GaussianMixture

    init = initial_parameters(X, n_components, covariance_type, seed)
    common = dict(n_components=n_components, covariance_type=covariance_type, tol=0.0,
                  reg_covar=1e-6, **init)
    result = {"case": name, "n_samples": X.shape[0], "n_features": X.shape[1],
              "n_components": n_components, "covariance_type": covariance_type, "n_iter": n_iter}
    sk = timed_fit(lambda it: SklearnGMM(max_iter=it, init_params="random_from_data", **common), X, n_iter)
    ours = timed_fit(lambda it: GaussianMixture(max_iter=it, **common), X, n_iter)
    ours32 = timed_fit(lambda it: GaussianMixture(max_iter=it, dtype=np.float32, **common), X, n_iter)
    result.update(
        sklearn_s_per_iter=sk[0], speakergmm_s_per_iter=ours[0], speakergmm_f32_s_per_iter=ours32[0],
        speedup_float64=sk[0] / ours[0], speedup_float32=sk[0] / ours32[0],
        sklearn_peak_mib=sk[1], speakergmm_peak_mib=ours[1], speakergmm_f32_peak_mib=ours32[1],
        sklearn_loglik=sk[2], speakergmm_loglik=ours[2], speakergmm_f32_loglik=ours32[2],
        loglik_abs_diff=abs(sk[2] - ours[2]), loglik_abs_diff_f32=abs(sk[2] - ours32[2]),
    )
    if covariance_type == "diag":
        result.update(estep_share_of_peak(X, init, n_components))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--n-iter", type=int, default=3, help="EM iterations timed per case")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    scale = 20 if args.quick else 1
    cases = [("diag", 200_000 // scale, 39, 256 // (4 if args.quick else 1), "diag"),
             ("full", 200_000 // scale, 39, 64 // (4 if args.quick else 1), "full")]
    results = []
    for name, n, d, k, cov in cases:
        X = make_data(n, d, 2 * k, args.seed)
        r = run_case(name, X, k, cov, args.n_iter, args.seed)
        results.append(r)
        print(f"{name:5s} N={n} D={d} K={k}: sklearn {r['sklearn_s_per_iter']:.3f} s/iter, "
              f"speakergmm {r['speakergmm_s_per_iter']:.3f} s/iter ({r['speedup_float64']:.1f}x), "
              f"float32 {r['speakergmm_f32_s_per_iter']:.3f} s/iter ({r['speedup_float32']:.1f}x); "
              f"peak MiB {r['sklearn_peak_mib']:.0f} vs {r['speakergmm_peak_mib']:.0f}; "
              f"loglik {r['sklearn_loglik']:.6f} vs {r['speakergmm_loglik']:.6f}"
              + (f"; E-step at {100 * r['share_of_gemm_peak']:.0f}% of GEMM peak"
                 if "share_of_gemm_peak" in r else ""), file=sys.stderr)
    print(json.dumps({"benchmark": "bench_em", "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
