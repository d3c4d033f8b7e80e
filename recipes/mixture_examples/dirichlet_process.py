#!/usr/bin/env python
"""Dirichlet-process pruning: a deliberately too large mixture switches off what it does not need.

Data from three well-separated Gaussians is fitted with 10 components three ways:

- :class:`speakergmm.mixture.BayesianGaussianMixture` with a Dirichlet-process
  (stick-breaking) prior on the weights
  (``weight_concentration_prior_type="dirichlet_process"``, the default concentration
  ``1 / n_components``);
- the same with a finite Dirichlet prior (``"dirichlet_distribution"``);
- plain EM (:class:`speakergmm.mixture.GaussianMixture`), which has no prior on the
  weights and so spreads the data over all 10 components.

Variational inference drives the weights of unneeded components towards zero (what is
left is roughly their prior mass). The effective number of components is counted as the
components with a weight above 1%; the perplexity of the weights, ``exp(-sum w log w)``,
is reported as a threshold-free alternative.

Writes ``dirichlet_process.png`` (the data with the ellipses of the components above 1%,
and the weights of the three models as bars) and ``results.json``.

Usage::

    python recipes/mixture_examples/dirichlet_process.py --out DIR [--seed 0]
"""

from __future__ import annotations

import sys

import numpy as np

from _common import draw_ellipses, figure, parse_args, require, save_figure, write_results

from speakergmm.mixture import BayesianGaussianMixture, GaussianMixture

TRUE_MEANS = np.array([[0.0, 0.0], [5.0, 1.0], [1.0, 5.0]])
TRUE_COVARIANCE = np.array([[0.6, 0.2], [0.2, 0.4]])
N_PER_CLUSTER = (250, 200, 150)
N_COMPONENTS = 10
WEIGHT_THRESHOLD = 0.01


def effective_components(weights: np.ndarray, threshold: float = WEIGHT_THRESHOLD) -> dict:
    weights = np.asarray(weights, dtype=np.float64)
    positive = weights[weights > 0]
    return {"n_above_threshold": int(np.sum(weights > threshold)),
            "perplexity": float(np.exp(-np.sum(positive * np.log(positive)))),
            "weights": np.round(weights, 5).tolist()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv)
    require("matplotlib")
    rng = np.random.default_rng(args.seed)
    X = np.concatenate([rng.multivariate_normal(m, TRUE_COVARIANCE, n)
                        for m, n in zip(TRUE_MEANS, N_PER_CLUSTER)])

    models = {
        "dirichlet_process": BayesianGaussianMixture(
            n_components=N_COMPONENTS, weight_concentration_prior_type="dirichlet_process",
            max_iter=500, random_state=args.seed),
        "dirichlet_distribution": BayesianGaussianMixture(
            n_components=N_COMPONENTS, weight_concentration_prior_type="dirichlet_distribution",
            max_iter=500, random_state=args.seed),
        "em": GaussianMixture(n_components=N_COMPONENTS, max_iter=500, random_state=args.seed),
    }
    results: dict = {"seed": args.seed, "n_samples": int(X.shape[0]),
                     "true_n_components": len(N_PER_CLUSTER), "n_components": N_COMPONENTS,
                     "weight_threshold": WEIGHT_THRESHOLD, "models": {}}
    for name, model in models.items():
        model.fit(X)
        results["models"][name] = {**effective_components(model.weights_),
                                   "converged": bool(model.converged_), "n_iter": int(model.n_iter_),
                                   "lower_bound": float(model.lower_bound_)}
    dp = models["dirichlet_process"]
    results["models"]["dirichlet_process"]["weight_concentration"] = \
        np.asarray(dp.weight_concentration_).tolist()

    fig = figure((12.0, 4.6))
    ax_data, ax_bars = fig.subplots(1, 2, width_ratios=[1, 1.3])
    kept = np.flatnonzero(dp.weights_ > WEIGHT_THRESHOLD)
    labels = dp.predict(X)
    ax_data.scatter(X[:, 0], X[:, 1], c=[f"C{k % 10}" for k in labels], s=6, linewidths=0,
                    alpha=0.6)
    draw_ellipses(ax_data, dp, components=kept)
    ax_data.set_aspect("equal", adjustable="datalim")
    ax_data.set_title(f"Dirichlet process, {N_COMPONENTS} allowed: {len(kept)} above "
                      f"{100 * WEIGHT_THRESHOLD:.0f}% weight", fontsize="medium")
    positions = np.arange(N_COMPONENTS)
    width = 0.27
    for i, (name, label) in enumerate((("dirichlet_process", "Dirichlet process (VB)"),
                                       ("dirichlet_distribution", "Dirichlet distribution (VB)"),
                                       ("em", "EM, no prior on weights"))):
        r = results["models"][name]
        ax_bars.bar(positions + (i - 1) * width, r["weights"], width,
                    label=f"{label}: {r['n_above_threshold']} above {100 * WEIGHT_THRESHOLD:.0f}%")
    ax_bars.axhline(WEIGHT_THRESHOLD, color="k", linestyle=":", linewidth=1)
    ax_bars.set_yscale("log")
    ax_bars.set_ylim(1e-4, 1.0)
    ax_bars.set_xticks(positions)
    ax_bars.set_xlabel("component")
    ax_bars.set_ylabel("weight (log scale; dotted: 1%)")
    ax_bars.legend(fontsize="small", loc="lower center", bbox_to_anchor=(0.5, 1.0))
    save_figure(fig, args.out / "dirichlet_process.png")
    write_results(args.out / "results.json", results)

    for name, r in results["models"].items():
        print(f"{name:<23} {r['n_above_threshold']:2d} components above "
              f"{100 * WEIGHT_THRESHOLD:.0f}%, perplexity {r['perplexity']:.2f}, "
              f"largest weights {sorted(r['weights'], reverse=True)[:4]}")
    print(f"true number of clusters: {len(N_PER_CLUSTER)}")
    print(f"wrote {args.out / 'dirichlet_process.png'} and {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
