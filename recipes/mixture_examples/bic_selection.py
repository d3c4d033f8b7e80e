#!/usr/bin/env python
"""Choosing the number of components (and the covariance type) by BIC and AIC.

Synthetic 2-D data from four Gaussians with different shapes is fitted with 1..8
components and every covariance type by :func:`speakergmm.mixture.selection.select_mixture`.
BIC (``-2 log L + p log n``) charges each parameter ``log n``; AIC (``-2 log L + 2p``)
charges 2, so it is more willing to add components. BIC is consistent: with enough data
from a mixture of the family it recovers the true number of components.

Writes ``selection.png`` (BIC and AIC curves per covariance type, and the chosen model's
ellipses over the data), ``selection.csv`` (one row per fit) and ``results.json``
(the true number, BIC's and AIC's choices, the table).

Usage::

    python recipes/mixture_examples/bic_selection.py --out DIR [--seed 0] [--max-components 8]
"""

from __future__ import annotations

import sys

import numpy as np

from _common import draw_ellipses, figure, parse_args, require, save_figure, write_results

from speakergmm.mixture.selection import select_mixture

TRUE_MEANS = np.array([[0.0, 0.0], [6.0, 1.0], [1.0, 6.0], [7.0, 7.0]])
TRUE_COVARIANCES = np.array([
    [[2.0, 1.2], [1.2, 1.0]],
    [[0.6, 0.0], [0.0, 1.8]],
    [[1.0, -0.6], [-0.6, 0.8]],
    [[0.5, 0.0], [0.0, 0.5]],
])
N_PER_COMPONENT = (300, 250, 250, 200)


def make_data(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.multivariate_normal(m, c, n)
                           for m, c, n in zip(TRUE_MEANS, TRUE_COVARIANCES, N_PER_COMPONENT)])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv, **{
        "--max-components": dict(type=int, default=8, help="largest number of components tried"),
    })
    require("matplotlib")
    X = make_data(args.seed)
    result = select_mixture(X, n_components=range(1, args.max_components + 1),
                            covariance_types=("full", "tied", "diag", "spherical"),
                            criterion="bic", random_state=args.seed, n_init=2)
    aic_row = result.best_row("aic")
    print(result)
    result.to_csv(args.out / "selection.csv")

    fig = figure((15.0, 4.5))
    ax_bic, ax_aic, ax_data = fig.subplots(1, 3)
    result.plot(ax=ax_bic, criterion="bic")
    result.plot(ax=ax_aic, criterion="aic")
    ax_bic.set_title("BIC")
    ax_aic.set_title(f"AIC (its own minimum: {aic_row['covariance_type']}, "
                     f"K={aic_row['n_components']})")
    best = result.best_estimator_
    ax_data.scatter(X[:, 0], X[:, 1], c=[f"C{k % 10}" for k in best.predict(X)], s=6,
                    linewidths=0, alpha=0.6)
    draw_ellipses(ax_data, best)
    ax_data.set_title(f"chosen by BIC: {result.best_params_['covariance_type']}, "
                      f"K={result.best_params_['n_components']} (true K={len(N_PER_COMPONENT)})")
    ax_data.set_aspect("equal", adjustable="datalim")
    save_figure(fig, args.out / "selection.png")

    results = {
        "seed": args.seed, "n_samples": int(X.shape[0]),
        "true_n_components": len(N_PER_COMPONENT), "true_covariance_type": "full",
        "bic_choice": result.best_params_, "bic_value": result.best_score_,
        "aic_choice": {"n_components": aic_row["n_components"],
                       "covariance_type": aic_row["covariance_type"]},
        "aic_value": aic_row["aic"],
        "sweep_seconds": float(sum(row["fit_seconds"] for row in result.rows)),
        "table": result.rows,
    }
    write_results(args.out / "results.json", results)
    print(f"true: full, K={len(N_PER_COMPONENT)}; BIC chose {result.best_params_}; AIC chose "
          f"{results['aic_choice']}")
    print(f"wrote {args.out / 'selection.png'}, selection.csv and results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
