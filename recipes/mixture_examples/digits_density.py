#!/usr/bin/env python
"""Density estimation on handwritten digits, and new digits drawn with ``sample``.

scikit-learn's bundled 8x8 digits (1797 images, 64 pixels; no download) are projected on
their first 40 whitened principal components (about 99% of the variance), where a
Gaussian mixture is a reasonable density model. The mixture is chosen by held-out
log-likelihood (the criterion that matters for density estimation; BIC's choice is reported
too) from full and diagonal mixtures of several sizes. New digits are then drawn with
``sample`` and mapped back to pixels with the inverse PCA.

As a check that the samples look like digits, a 10-nearest-neighbour digit classifier
trained on half of the real images labels them: its mean confidence (the share of the 10
neighbours that agree) on the mixture's samples is compared with that on samples from a
single Gaussian (one component) and on the other half of the real digits.

Writes ``digits_samples.png`` (real digits on top, generated ones below),
``digits_selection.png`` (held-out log-likelihood curves), ``selection.csv`` and
``results.json``.

Usage::

    python recipes/mixture_examples/digits_density.py --out DIR [--seed 0] [--jobs 1]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from _common import figure, parse_args, require, save_figure, write_results

from speakergmm.mixture import GaussianMixture
from speakergmm.mixture.selection import select_mixture

N_PCA = 40
SIZES = (1, 2, 4, 6, 8, 12)
N_DRAWN = 48


def classifier_confidence(classifier, images: np.ndarray) -> float:
    """Mean probability the digit classifier gives its own label (pixels in 0..16)."""
    return float(classifier.predict_proba(np.clip(images, 0, 16) / 16.0).max(axis=1).mean())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv, **{
        "--jobs": dict(type=int, default=1, help="worker processes for the sweep (default 1)"),
    })
    require("matplotlib", "sklearn")
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA
    from sklearn.neighbors import KNeighborsClassifier

    start = time.perf_counter()
    digits = load_digits()
    pca = PCA(n_components=N_PCA, whiten=True, random_state=args.seed).fit(digits.data)
    Z = pca.transform(digits.data)

    result = select_mixture(Z, n_components=SIZES, covariance_types=("full", "diag"),
                            criterion="heldout", validation_fraction=0.2,
                            random_state=args.seed, estimator_params={"tol": 1e-2},
                            jobs=args.jobs)
    print(result)
    result.to_csv(args.out / "selection.csv")
    bic_row = result.best_row("bic")
    model = result.best_estimator_  # refitted on all 1797 images
    drawn, components = model.sample(N_DRAWN)
    images = pca.inverse_transform(drawn)

    baseline = GaussianMixture(n_components=1, random_state=args.seed).fit(Z)
    baseline_images = pca.inverse_transform(baseline.sample(200)[0])
    half = digits.data.shape[0] // 2
    classifier = KNeighborsClassifier(n_neighbors=10).fit(digits.data[:half] / 16.0,
                                                         digits.target[:half])
    many = pca.inverse_transform(model.sample(200)[0])
    confidence = {"mixture_samples": classifier_confidence(classifier, many),
                  "single_gaussian_samples": classifier_confidence(classifier, baseline_images),
                  "real_digits": classifier_confidence(classifier, digits.data[half:])}

    fig = figure((8.0, 9.0))
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, 3])
    rng = np.random.default_rng(args.seed)
    real = digits.data[rng.choice(digits.data.shape[0], 16, replace=False)]
    for sub, imgs, n_cols, title in (
            (top, real, 8, "real digits"),
            (bottom, images, 8, f"drawn from the mixture ({model.covariance_type}, "
                                f"K={model.n_components}) in {N_PCA}-d whitened PCA space")):
        axes = sub.subplots(len(imgs) // n_cols, n_cols)
        for ax, image in zip(np.ravel(axes), imgs):
            ax.imshow(np.clip(image, 0, 16).reshape(8, 8), cmap="binary", vmin=0, vmax=16,
                      interpolation="nearest")
            ax.set_axis_off()
        sub.suptitle(title, fontsize="medium")
    save_figure(fig, args.out / "digits_samples.png")

    fig = figure((6.0, 4.0))
    result.plot(ax=fig.add_subplot())
    save_figure(fig, args.out / "digits_selection.png")

    results = {
        "seed": args.seed, "n_images": int(digits.data.shape[0]), "pca_components": N_PCA,
        "pca_explained_variance": float(pca.explained_variance_ratio_.sum()),
        "heldout_choice": result.best_params_,
        "heldout_log_likelihood": result.best_score_,
        "heldout_log_likelihood_single_gaussian": float(next(
            row["heldout_log_likelihood"] for row in result.rows
            if row["n_components"] == 1 and row["covariance_type"] == "full")),
        "bic_choice": {"n_components": bic_row["n_components"],
                       "covariance_type": bic_row["covariance_type"]},
        "n_drawn": N_DRAWN, "drawn_components": np.bincount(components,
                                                            minlength=model.n_components).tolist(),
        "classifier_confidence": confidence,
        "seconds": time.perf_counter() - start,
        "table": result.rows,
    }
    write_results(args.out / "results.json", results)
    print(f"held-out log-likelihood chose {result.best_params_} "
          f"({result.best_score_:.2f} per image vs {results['heldout_log_likelihood_single_gaussian']:.2f} "
          f"for one Gaussian); BIC would choose {results['bic_choice']}")
    print("digit classifier's mean confidence: "
          + ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in confidence.items()))
    print(f"wrote {args.out / 'digits_samples.png'}, digits_selection.png, selection.csv and "
          f"results.json ({results['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
