#!/usr/bin/env python
"""Variational Bayesian GMM fit time: speakergmm vs scikit-learn, side by side in one run.

Deterministic synthetic data (a random mixture with a fixed seed, fewer true clusters than
allowed components, so the Dirichlet process has something to prune). Both libraries get
the same constructor arguments: ``init_params="random_from_data"`` with the same integer
``random_state`` gives both the same start, and ``tol=0`` with ``max_iter=n`` the same
number of iterations, so the final ELBOs must match; the benchmark reports their relative
difference next to the times. Timed: the whole ``fit`` (prior defaults, initialisation and
all iterations), best of ``--repeats``; peak traced memory of one more fit each.

Prints one JSON line on stdout; a readable summary on stderr.

    python scripts/bench_bayes.py            # diag K=128 N=200k, full K=32 N=100k (~2-3 min)
    python scripts/bench_bayes.py --quick    # small sizes, for a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import tracemalloc
import warnings

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits


def make_data(n_samples: int, n_features: int, n_clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(n_clusters, n_features))
    scales = rng.uniform(0.5, 2.0, size=(n_clusters, n_features))
    labels = rng.integers(n_clusters, size=n_samples)
    return centres[labels] + rng.standard_normal((n_samples, n_features)) * scales[labels]


def _fit(make, X: np.ndarray):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: tol=0 never converges, on purpose
        return make().fit(X)


def timed(make, X: np.ndarray, repeats: int) -> dict:
    best, model = np.inf, None
    for _ in range(repeats):
        t = time.perf_counter()
        model = _fit(make, X)
        best = min(best, time.perf_counter() - t)
    tracemalloc.start()
    _fit(make, X)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"seconds": best, "peak_mib": peak / 2**20,
            "elbo": float(np.ravel(model.lower_bound_)[0]), "n_iter": int(model.n_iter_),
            "effective_components": int((model.weights_ > 0.01).sum())}


def run_case(X: np.ndarray, n_components: int, covariance_type: str, n_iter: int, seed: int,
             repeats: int) -> dict:
    from sklearn.mixture import BayesianGaussianMixture as SklearnBGM

    from speakergmm import BayesianGaussianMixture

    common = dict(n_components=n_components, covariance_type=covariance_type, tol=0.0,
                  max_iter=n_iter, init_params="random_from_data", random_state=seed,
                  weight_concentration_prior_type="dirichlet_process")
    sk = timed(lambda: SklearnBGM(**common), X, repeats)
    ours = timed(lambda: BayesianGaussianMixture(**common), X, repeats)
    ours32 = timed(lambda: BayesianGaussianMixture(**common, dtype=np.float32), X, repeats)
    return {
        "covariance_type": covariance_type, "n_samples": X.shape[0], "n_features": X.shape[1],
        "n_components": n_components, "n_iter": n_iter,
        "sklearn": sk, "speakergmm": ours, "speakergmm_float32": ours32,
        "speedup": sk["seconds"] / ours["seconds"],
        "speedup_float32": sk["seconds"] / ours32["seconds"],
        "elbo_rel_diff": abs(sk["elbo"] - ours["elbo"]) / abs(sk["elbo"]),
        "elbo_rel_diff_float32": abs(sk["elbo"] - ours32["elbo"]) / abs(sk["elbo"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--n-iter", type=int, default=10, help="variational iterations per fit")
    parser.add_argument("--repeats", type=int, default=2, help="timed fits per library (best kept)")
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="limit BLAS threads for both libraries (default: the library default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    scale = 20 if args.quick else 1
    cases = [(200_000 // scale, 39, 128 // (4 if args.quick else 1), "diag"),
             (100_000 // scale, 39, 32 // (4 if args.quick else 1), "full")]
    results = []
    with threadpool_limits(limits=args.blas_threads, user_api="blas"):
        blas_threads = [lib.get("num_threads") for lib in threadpool_info() if lib.get("user_api") == "blas"]
        for n, d, k, cov in cases:
            X = make_data(n, d, max(2, k // 4), args.seed)
            r = run_case(X, k, cov, args.n_iter, args.seed, args.repeats)
            results.append(r)
            print(f"{cov:4s} N={n} D={d} K={k}, {args.n_iter} iterations: sklearn "
                  f"{r['sklearn']['seconds']:.2f} s, speakergmm {r['speakergmm']['seconds']:.2f} s "
                  f"({r['speedup']:.1f}x), float32 {r['speakergmm_float32']['seconds']:.2f} s "
                  f"({r['speedup_float32']:.1f}x); ELBO {r['sklearn']['elbo']:.6g} vs "
                  f"{r['speakergmm']['elbo']:.6g} (rel. diff {r['elbo_rel_diff']:.1e}); peak MiB "
                  f"{r['sklearn']['peak_mib']:.0f} vs {r['speakergmm']['peak_mib']:.0f}",
                  file=sys.stderr)
    target = all(r["speedup"] >= 2.0 and r["elbo_rel_diff"] < 1e-6 for r in results)
    print(json.dumps({"benchmark": "bench_bayes", "target_2x_at_matching_elbo": target,
                      "blas_threads": blas_threads, "cpu_count": os.cpu_count(),
                      "load_average": list(os.getloadavg()), "machine": platform.machine(),
                      "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
