#!/usr/bin/env python
"""Anomaly detection with a Gaussian mixture: flag what the density finds unlikely.

Part 1 (synthetic): a mixture is fitted to normal 2-D data from three Gaussians, the
threshold on ``score_samples`` is set for a 1% false-alarm rate on held-out normal data
(:class:`speakergmm.mixture.anomaly.DensityAnomalyDetector` with ``false_alarm_rate``), and a
test set of new normal points with injected outliers (uniform over a wide box) is labelled.
For comparison, the threshold taken as the 1% quantile of the *training* scores
(``contamination``) is also evaluated: it flags somewhat more new normal points than 1%,
because the model fits its own training data better than new data.

Part 2 (real audio, skipped with a message when the Free Spoken Digit Dataset is absent):
MFCC frames of one speaker (george) are "normal"; recordings of the five other speakers are
the anomalies. Single 10 ms frames of different speakers overlap a lot, so frame-level
detection is weak; averaging the frame log-likelihoods over a recording separates the
speakers well. The utterance threshold is set on held-out recordings of george with
:func:`speakergmm.mixture.anomaly.threshold_for_false_alarm_rate`.

Writes ``anomaly_synthetic.png``, ``anomaly_fsdd.png`` (when the data is there) and
``results.json`` (threshold, false-alarm rate on new normal data, precision and recall).

Usage::

    python recipes/mixture_examples/anomaly_detection.py --out DIR [--seed 0] [--data FSDD_DIR]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from _common import REPO, figure, parse_args, require, save_figure, write_results

from speakergmm.mixture import GaussianMixture
from speakergmm.mixture.anomaly import DensityAnomalyDetector, threshold_for_false_alarm_rate

NORMAL_MEANS = np.array([[0.0, 0.0], [4.0, 1.0], [1.0, 4.5]])
NORMAL_COVARIANCES = np.array([[[1.0, 0.6], [0.6, 1.0]], [[0.6, 0.0], [0.0, 0.3]],
                               [[0.8, -0.3], [-0.3, 0.5]]])
BOX = (-6.0, 10.0)
TARGET_FAR = 0.01
DEFAULT_FSDD = REPO.parent / "shared" / "data" / "fsdd" / "recordings"
NORMAL_SPEAKER = "george"
OTHER_SPEAKERS = ("jackson", "lucas", "nicolas", "theo", "yweweler")
UTTERANCE_FAR = 0.05


def normal_data(n: int, rng: np.random.Generator) -> np.ndarray:
    labels = rng.integers(len(NORMAL_MEANS), size=n)
    return np.concatenate([rng.multivariate_normal(NORMAL_MEANS[k], NORMAL_COVARIANCES[k],
                                                   int(np.sum(labels == k)))
                           for k in range(len(NORMAL_MEANS))])


def detection_report(flagged: np.ndarray, is_outlier: np.ndarray) -> dict:
    """Precision, recall and false-alarm rate of boolean flags against the truth."""
    true_positives = int(np.sum(flagged & is_outlier))
    n_flagged = int(np.sum(flagged))
    return {"precision": true_positives / n_flagged if n_flagged else float("nan"),
            "recall": true_positives / int(np.sum(is_outlier)),
            "false_alarm_rate": float(np.mean(flagged[~is_outlier])),
            "n_flagged": n_flagged, "n_true_outliers": int(np.sum(is_outlier))}


def auc(normal_scores: np.ndarray, anomaly_scores: np.ndarray) -> float:
    """Probability that an anomaly scores below a normal sample (Mann-Whitney)."""
    ranks = rankdata(np.concatenate([anomaly_scores, normal_scores]))
    n_a, n_n = anomaly_scores.size, normal_scores.size
    return float((n_a * n_n + n_a * (n_a + 1) / 2 - ranks[:n_a].sum()) / (n_a * n_n))


def synthetic(seed: int, out: Path) -> dict:
    rng = np.random.default_rng(seed)
    X_train = normal_data(2000, rng)
    X_normal_test = normal_data(2000, rng)
    X_outliers = rng.uniform(*BOX, size=(100, 2))
    X_test = np.concatenate([X_normal_test, X_outliers])
    is_outlier = np.r_[np.zeros(len(X_normal_test), bool), np.ones(len(X_outliers), bool)]

    mixture = GaussianMixture(n_components=3, covariance_type="full", n_init=2, random_state=seed)
    detector = DensityAnomalyDetector(mixture, false_alarm_rate=TARGET_FAR,
                                      calibration_fraction=0.25, random_state=seed).fit(X_train)
    by_contamination = DensityAnomalyDetector(mixture, contamination=TARGET_FAR).fit(X_train)
    results = {}
    for name, det in (("false_alarm_rate", detector), ("contamination", by_contamination)):
        flagged = det.predict(X_test) == -1
        results[name] = {"threshold": det.threshold_, **detection_report(flagged, is_outlier)}
    results["auc"] = auc(detector.score_samples(X_normal_test), detector.score_samples(X_outliers))
    results["target_false_alarm_rate"] = TARGET_FAR
    results.update(n_train=len(X_train), n_test_normal=len(X_normal_test),
                   n_test_outliers=len(X_outliers))

    fig = figure((11.0, 4.6))
    ax_map, ax_hist = fig.subplots(1, 2)
    grid = np.linspace(*BOX, 300)
    gx, gy = np.meshgrid(grid, grid)
    decision = detector.decision_function(np.c_[gx.ravel(), gy.ravel()]).reshape(gx.shape)
    ax_map.contourf(gx, gy, decision, levels=[-np.inf, 0, np.inf], colors=["#f6d5d0", "#dbe9f6"])
    ax_map.contour(gx, gy, decision, levels=[0], colors="k", linewidths=1)
    flagged = detector.predict(X_test) == -1
    for mask, style in (((~is_outlier) & ~flagged, dict(c="C0", s=5, label="normal")),
                        ((~is_outlier) & flagged, dict(c="C1", s=18, marker="s", label="false alarm")),
                        (is_outlier & flagged, dict(c="C3", s=22, marker="x", label="outlier, flagged")),
                        (is_outlier & ~flagged, dict(c="k", s=22, marker="+", label="outlier, missed"))):
        ax_map.scatter(X_test[mask, 0], X_test[mask, 1], linewidths=1 if "marker" in style else 0,
                       **style)
    ax_map.set_title(f"threshold for {100 * TARGET_FAR:.0f}% false alarms (black line)")
    ax_map.legend(fontsize="small", loc="upper right")
    scores_normal = detector.score_samples(X_normal_test)
    scores_out = detector.score_samples(X_outliers)
    # Far outliers score very low: pile them into the first bin so the threshold region shows.
    low = detector.threshold_ - 12.0
    bins = np.linspace(low, scores_normal.max(), 50)
    ax_hist.hist(np.maximum(scores_normal, low), bins=bins, alpha=0.6, label="new normal points")
    ax_hist.hist(np.maximum(scores_out, low), bins=bins, alpha=0.6,
                 label=f"injected outliers (those below {low:.0f} in the first bin)")
    ax_hist.set_yscale("log")
    ax_hist.axvline(detector.threshold_, color="k", label="threshold (held-out 1%)")
    ax_hist.axvline(by_contamination.threshold_, color="k", linestyle=":",
                    label="threshold (training 1%)")
    ax_hist.set_xlabel("score_samples: log p(x)")
    ax_hist.legend(fontsize="small")
    save_figure(fig, out / "anomaly_synthetic.png")
    return results


def fsdd_files(root: Path, speaker: str, indices) -> list[Path]:
    return [root / f"{digit}_{speaker}_{index}.wav" for digit in range(10) for index in indices]


def fsdd(root: Path, seed: int, out: Path) -> dict:
    """George's frames are normal; the other speakers' recordings are anomalies."""
    from speakergmm.features import FeatureConfig
    from speakergmm.features.extract import extract_features

    config = FeatureConfig()  # 20 MFCCs + deltas + delta-deltas, VAD, per-utterance CMVN
    skipped: list[str] = []

    def features(paths: list[Path]) -> list[np.ndarray]:
        feats = []
        for path in paths:
            try:
                feats.append(extract_features(path, config))
            except (ValueError, OSError) as exc:  # unreadable or silent: go on, report it
                skipped.append(f"{path.name}: {exc}")
        return feats

    fit_utts = features(fsdd_files(root, NORMAL_SPEAKER, range(5, 35)))
    calibration_utts = features(fsdd_files(root, NORMAL_SPEAKER, range(35, 50)))
    normal_test = features(fsdd_files(root, NORMAL_SPEAKER, range(0, 5)))
    other_test = {spk: features(fsdd_files(root, spk, range(0, 5))) for spk in OTHER_SPEAKERS}
    if not fit_utts or not calibration_utts or not normal_test:
        raise ValueError(f"{root}: too few readable recordings of {NORMAL_SPEAKER}")

    detector = DensityAnomalyDetector(
        GaussianMixture(n_components=16, covariance_type="diag", random_state=seed),
        false_alarm_rate=UTTERANCE_FAR).fit(np.concatenate(fit_utts),
                                            X_calibration=np.concatenate(calibration_utts))
    # Frame level: the detector as it is.
    frames_normal = detector.score_samples(np.concatenate(normal_test))
    others = [x for utts in other_test.values() for x in utts]
    frames_other = detector.score_samples(np.concatenate(others))
    flagged = np.r_[frames_normal, frames_other] < detector.threshold_
    is_other = np.r_[np.zeros(frames_normal.size, bool), np.ones(frames_other.size, bool)]
    frame = {"threshold": detector.threshold_, **detection_report(flagged, is_other),
             "auc": auc(frames_normal, frames_other)}

    # Utterance level: the mean frame log-likelihood, thresholded on held-out recordings.
    def utterance_scores(utts: list[np.ndarray]) -> np.ndarray:
        return np.array([detector.score_samples(x).mean() for x in utts])

    threshold = threshold_for_false_alarm_rate(utterance_scores(calibration_utts), UTTERANCE_FAR)
    utt_normal = utterance_scores(normal_test)
    utt_other = {spk: utterance_scores(utts) for spk, utts in other_test.items()}
    all_other = np.concatenate(list(utt_other.values()))
    flagged = np.r_[utt_normal, all_other] < threshold
    is_other = np.r_[np.zeros(utt_normal.size, bool), np.ones(all_other.size, bool)]
    utterance = {"threshold": threshold, **detection_report(flagged, is_other),
                 "auc": auc(utt_normal, all_other),
                 "detection_rate_per_speaker": {spk: float(np.mean(s < threshold))
                                                for spk, s in utt_other.items()}}

    fig = figure((6.5, 4.2))
    ax = fig.add_subplot()
    bins = np.linspace(min(all_other.min(), utt_normal.min()), utt_normal.max() + 1, 40)
    ax.hist(utt_normal, bins=bins, alpha=0.7, label=f"{NORMAL_SPEAKER} (normal, test)")
    ax.hist(all_other, bins=bins, alpha=0.5, label="other speakers")
    ax.axvline(threshold, color="k", label=f"threshold ({100 * UTTERANCE_FAR:.0f}% false alarms "
                                          "on held-out recordings)")
    ax.set_xlabel("mean frame log-likelihood of a recording")
    ax.set_ylabel("recordings")
    ax.legend(fontsize="small")
    save_figure(fig, out / "anomaly_fsdd.png")
    return {"data": str(root), "normal_speaker": NORMAL_SPEAKER,
            "n_fit_frames": int(sum(len(x) for x in fit_utts)),
            "n_fit_recordings": len(fit_utts), "n_calibration_recordings": len(calibration_utts),
            "n_test_normal_recordings": len(normal_test), "n_test_other_recordings": len(others),
            "target_false_alarm_rate": UTTERANCE_FAR, "frame_level": frame,
            "utterance_level": utterance, "skipped_files": skipped}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, argv, **{
        "--data": dict(type=Path, default=None,
                       help="FSDD recordings folder (default: $SPEAKERGMM_FSDD, else "
                            "../shared/data/fsdd/recordings next to the repository)"),
        "--no-fsdd": dict(dest="use_fsdd", action="store_false", help="skip the real-data part"),
    })
    require("matplotlib")
    results: dict = {"seed": args.seed, "synthetic": synthetic(args.seed, args.out)}
    s = results["synthetic"]
    print(f"synthetic: AUC {s['auc']:.3f}")
    for name in ("false_alarm_rate", "contamination"):
        r = s[name]
        print(f"  threshold by {name:<16} {r['threshold']:7.2f}: precision {r['precision']:.2f}, "
              f"recall {r['recall']:.2f}, false alarms on new normal data "
              f"{100 * r['false_alarm_rate']:.2f}% (target {100 * TARGET_FAR:.0f}%)")

    root = args.data or Path(os.environ.get("SPEAKERGMM_FSDD", DEFAULT_FSDD))
    status = 0
    if not args.use_fsdd:
        results["fsdd"] = {"skipped": "--no-fsdd"}
    elif not root.is_dir() or not any(root.glob("*.wav")):
        results["fsdd"] = {"skipped": f"no FSDD recordings at {root}"}
        print(f"fsdd: skipped, no recordings at {root} (give --data or set $SPEAKERGMM_FSDD)")
    else:
        results["fsdd"] = f = fsdd(root, args.seed, args.out)
        for level in ("frame_level", "utterance_level"):
            r = f[level]
            print(f"fsdd {level.replace('_', ' ')}: AUC {r['auc']:.3f}, precision "
                  f"{r['precision']:.2f}, recall {r['recall']:.2f}, false alarms "
                  f"{100 * r['false_alarm_rate']:.1f}% (target {100 * UTTERANCE_FAR:.0f}%)")
        if f["skipped_files"]:
            print(f"fsdd: {len(f['skipped_files'])} recording(s) could not be used:")
            for line in f["skipped_files"]:
                print(f"  {line}")
            status = 3
    write_results(args.out / "results.json", results)
    print(f"wrote {args.out / 'results.json'} and the plots in {args.out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
