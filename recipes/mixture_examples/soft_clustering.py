#!/usr/bin/env python
"""Soft clustering with predict_proba: three overlapping blobs, four covariance types.

A mixture gives each point a probability of belonging to each component
(``predict_proba``), not just a label. Where the blobs overlap the probabilities are split,
and the colour of each point below mixes the colours of its components in those
proportions. The same data is fitted with each covariance type: ``full`` (any ellipse per
component), ``tied`` (one shared ellipse), ``diag`` (axis-aligned ellipses) and
``spherical`` (circles); the covariance ellipses are drawn at 1 and 2 standard deviations.

Writes ``soft_clustering.png`` and ``results.json`` (per covariance type: BIC, mean
log-likelihood, adjusted Rand index against the true blobs, the share of points whose
largest membership probability is below 0.9, and the mean largest probability).

Usage::

    python recipes/mixture_examples/soft_clustering.py --out DIR [--seed 0]
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.optimize import linear_sum_assignment

from _common import draw_ellipses, figure, parse_args, require, save_figure, write_results

from speakergmm.mixture import GaussianMixture

TRUE_MEANS = np.array([[0.0, 0.0], [3.0, 1.5], [0.5, 3.5]])
TRUE_COVARIANCES = np.array([
    [[1.6, 0.9], [0.9, 0.8]],     # elongated along the diagonal
    [[0.5, -0.3], [-0.3, 1.0]],
    [[0.9, 0.0], [0.0, 0.25]],    # flat
])
N_PER_BLOB = (300, 200, 200)
UNCERTAIN = 0.9  # a point is "shared" when no component has at least this probability


def make_blobs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.multivariate_normal(m, c, n)
                        for m, c, n in zip(TRUE_MEANS, TRUE_COVARIANCES, N_PER_BLOB)])
    y = np.repeat(np.arange(len(N_PER_BLOB)), N_PER_BLOB)
    return X, y


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    require("matplotlib", "sklearn")
    from sklearn.metrics import adjusted_rand_score

    X, y = make_blobs(args.seed)
    palette = np.array([[0.85, 0.2, 0.15], [0.15, 0.45, 0.85], [0.2, 0.7, 0.25]])
    fig = figure((16.0, 4.4))
    axes = fig.subplots(1, 4, sharex=True, sharey=True)
    results: dict = {"n_samples": int(X.shape[0]), "true_n_components": len(N_PER_BLOB),
                     "seed": args.seed, "uncertain_below": UNCERTAIN, "covariance_types": {}}
    for ax, cov_type in zip(axes, ("full", "tied", "diag", "spherical")):
        gmm = GaussianMixture(n_components=3, covariance_type=cov_type, n_init=3,
                              random_state=args.seed).fit(X)
        proba = gmm.predict_proba(X)
        labels = proba.argmax(axis=1)
        # Match components to blobs by their means so colours are comparable across panels.
        distance = ((gmm.means_[:, None, :] - TRUE_MEANS[None]) ** 2).sum(axis=2)
        rank = linear_sum_assignment(distance)[1]  # component k is drawn as blob rank[k]
        colours = np.clip(proba @ palette[rank], 0.0, 1.0)
        ax.scatter(X[:, 0], X[:, 1], c=colours, s=9, linewidths=0)
        draw_ellipses(ax, gmm, colors=["k"] * 3)
        top = proba.max(axis=1)
        stats = {
            "bic": gmm.bic(X), "mean_log_likelihood": gmm.score(X),
            "adjusted_rand_index": float(adjusted_rand_score(y, labels)),
            "fraction_uncertain": float(np.mean(top < UNCERTAIN)),
            "mean_max_probability": float(top.mean()),
            "weights": np.round(gmm.weights_, 4).tolist(), "converged": bool(gmm.converged_),
        }
        results["covariance_types"][cov_type] = stats
        ax.set_title(f"{cov_type}: BIC {stats['bic']:.0f}, ARI {stats['adjusted_rand_index']:.2f}\n"
                     f"{100 * stats['fraction_uncertain']:.0f}% of points shared (max p < {UNCERTAIN})",
                     fontsize="medium")
        ax.set_aspect("equal", adjustable="box")
    fig.suptitle("Soft clustering: colour = membership probabilities mixed; ellipses at 1 and 2 sd")
    save_figure(fig, args.out / "soft_clustering.png")

    # A point in the overlap, to show what predict_proba says there.
    boundary = np.array([[1.6, 1.0]])
    full = GaussianMixture(n_components=3, covariance_type="full", n_init=3,
                           random_state=args.seed).fit(X)
    results["boundary_point"] = {"x": boundary[0].tolist(),
                                 "predict_proba": np.round(full.predict_proba(boundary)[0], 4).tolist()}
    best = min(results["covariance_types"], key=lambda c: results["covariance_types"][c]["bic"])
    results["best_covariance_type_by_bic"] = best
    write_results(args.out / "results.json", results)

    print(f"{'covariance':<10} {'BIC':>8} {'ARI':>5} {'shared':>7} {'mean max p':>10}")
    for cov_type, s in results["covariance_types"].items():
        print(f"{cov_type:<10} {s['bic']:8.1f} {s['adjusted_rand_index']:5.2f} "
              f"{100 * s['fraction_uncertain']:6.1f}% {s['mean_max_probability']:10.3f}")
    print(f"lowest BIC: {best}; predict_proba at {boundary[0].tolist()}: "
          f"{results['boundary_point']['predict_proba']}")
    print(f"wrote {args.out / 'soft_clustering.png'} and {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
