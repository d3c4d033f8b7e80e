#!/usr/bin/env python
"""Speaker verification on speechocean762 (125 speakers x 10 read utterances, 16 kHz):
GMM-UBM, i-vector cosine, i-vector PLDA and their calibrated fusion on one protocol.

Protocol (speakers kept apart; see README.md next to this file):

- the speakers (sorted ids) are shuffled with a fixed seed; the first ``--n-background``
  (85) are **background** speakers: all their utterances train the UBM, the
  total-variability matrix, the back end (whitening, LDA, PLDA) and form the S-norm
  cohort; the next ``--n-eval`` (40) are **evaluation** speakers;
- each evaluation speaker is enrolled from its first ``--n-enroll`` (3) utterances (by
  utterance id) and its other utterances are test segments; every test segment is scored
  against every evaluation model (40 x 280 = 11200 trials, 280 target);
- calibration and fusion are trained on held-out trials: the evaluation speakers are cut
  into two halves; the trials within one half (its models x its test segments) train the
  calibration (or fusion) applied to the trials within the other half, and the other way
  round. ``held_out`` metrics (actual DCF after calibration among them) are computed on
  those within-half trials, pooled.

Back ends: ``gmm-ubm`` (MAP means, top-5 LLR), ``gmm-ubm-snorm`` (adaptive S-norm with the
background cohort), ``ivector-cosine`` (whitening, length norm, LDA, WCCN, length norm,
cosine, adaptive S-norm; ``-raw`` without S-norm), ``ivector-plda`` (whitening, length
norm, two-covariance PLDA by EM with shrinkage; ``-snorm`` with adaptive S-norm),
``fusion`` (calibrated linear fusion of gmm-ubm and ivector-plda). The Baum-Welch
statistics of every utterance under the UBM are computed once and serve the T matrix,
i-vector extraction and MAP enrolment alike.

Writes ``OUT/results.json`` (per back end ``eer``, ``eer_kaldi``, ``min_dcf``, ``n_target``,
``n_nontarget``, speaker-bootstrap standard errors, and ``held_out`` calibrated figures),
``OUT/det.png`` (all back ends), score files and the models. A rerun reuses the features,
the UBM, the statistics and the T matrix when their settings did not change.

Usage::

    python recipes/so762_verification/run.py --data ../shared/data/speechocean762-train --out exp/so762
    python recipes/so762_verification/run.py --quick ...   # 40 speakers, K=64: a one-minute check
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = Path(os.environ.get("SPEAKERGMM_SO762", REPO.parent / "shared" / "data" / "speechocean762-train"))

if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

#: The recipe's tuned settings (docs/verification.md gives the measurements behind them).
DEFAULTS = dict(n_background=85, n_eval=40, n_enroll=3, seed=0, n_components=256, rank=150, t_iter=10,
                lda_dim=0, cosine_lda_dim=60, plda_iter=10, plda_shrinkage=0.1, snorm_top_n=200, top_c=5,
                relevance_factor=16.0, p_target=0.01, bootstrap=200)
QUICK = dict(n_background=25, n_eval=15, n_components=64, rank=60, t_iter=6, cosine_lda_dim=20, snorm_top_n=50,
             bootstrap=50)
BACKENDS = ("gmm-ubm", "gmm-ubm-snorm", "ivector-cosine", "ivector-plda", "ivector-plda-snorm", "fusion")
#: The systems the fusion combines (score-level, weights from held-out trials).
FUSED = ("gmm-ubm", "ivector-plda")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="see the module docstring, README.md and docs/verification.md")
    p.add_argument("--data", default=str(DEFAULT_DATA),
                   help=f"speechocean762 folder with utt2spk and recordings/ (default: {DEFAULT_DATA})")
    p.add_argument("--out", default=str(REPO / "exp" / "so762_verification"), help="output directory")
    p.add_argument("--quick", action="store_true", help="fewer speakers and Gaussians (a one-minute check)")
    for name, value in DEFAULTS.items():
        p.add_argument("--" + name.replace("_", "-"), type=type(value), default=None,
                       help=f"default {value} ({QUICK.get(name, value)} with --quick)")
    p.add_argument("--jobs", "-j", type=int, default=0, help="worker processes; 0 = all cores")
    p.add_argument("--quiet", "-q", action="store_true")
    return p.parse_args(argv)


def _data_dir(data: Path, out: Path, speakers=None):
    """Write ``OUT/data/all`` (a Kaldi data directory) for the speakers used (all by default)."""
    from speakergmm.corpus import DataDir, write_data_dir
    from speakergmm.verification import VerificationError

    utt2spk_path = data / "utt2spk"
    if not utt2spk_path.is_file() or not (data / "recordings").is_dir():
        raise VerificationError(f"{data}: not a speechocean762 folder (needs utt2spk and recordings/); "
                                "give --data or set SPEAKERGMM_SO762")
    utt2spk: dict[str, str] = {}
    for number, line in enumerate(utt2spk_path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise VerificationError(f"{utt2spk_path}:{number}: expected 'utterance speaker'")
        utt2spk[parts[0]] = parts[1]
    if speakers is not None:
        utt2spk = {u: s for u, s in utt2spk.items() if s in set(speakers)}
    wav = {u: str(data / "recordings" / s / f"{u}.flac") for u, s in utt2spk.items()}
    write_data_dir(DataDir(wav=wav, utt2spk=utt2spk), out / "data" / "all")
    return out / "data" / "all"


def protocol(spk2utt: dict[str, list[str]], n_background: int, n_eval: int, n_enroll: int, seed: int):
    """Background speakers, evaluation enrolment lists and test segments (see the module doc)."""
    from speakergmm.verification import VerificationError

    speakers = sorted(s for s, u in spk2utt.items() if len(u) > n_enroll)
    if len(speakers) < n_background + n_eval:
        raise VerificationError(f"{len(speakers)} speakers with more than {n_enroll} utterances; the protocol "
                                f"needs {n_background} background + {n_eval} evaluation speakers")
    order = np.random.default_rng(seed).permutation(len(speakers))
    background = [speakers[i] for i in order[:n_background]]
    evaluation = sorted(speakers[i] for i in order[n_background:n_background + n_eval])
    enroll = {s: sorted(spk2utt[s])[:n_enroll] for s in evaluation}
    tests = [u for s in evaluation for u in sorted(spk2utt[s])[n_enroll:]]
    return background, evaluation, enroll, tests


def _bootstrap(scores: np.ndarray, model_spk: np.ndarray, test_spk: np.ndarray, n: int, seed: int,
               p_target: float) -> dict[str, float]:
    """Standard errors of EER and minDCF by resampling evaluation speakers (with
    replacement, as models and as test speakers together)."""
    from speakergmm import metrics

    rng = np.random.default_rng(seed)
    speakers = np.unique(model_spk)
    index = {s: i for i, s in enumerate(speakers)}
    mi = np.array([index[s] for s in model_spk])
    ti = np.array([index[s] for s in test_spk])
    target = mi == ti
    eers, dcfs = [], []
    for _ in range(n):
        counts = np.bincount(rng.integers(0, len(speakers), len(speakers)), minlength=len(speakers))
        weight = counts[mi] * counts[ti]
        keep = weight > 0
        s = np.repeat(scores[keep], weight[keep])
        t = np.repeat(target[keep], weight[keep])
        if t.all() or not t.any():
            continue
        eers.append(metrics.eer(s[t], s[~t]))
        dcfs.append(metrics.min_dcf(s[t], s[~t], p_target=p_target)[0])
    return {"eer_se": float(np.std(eers, ddof=1)), "min_dcf_se": float(np.std(dcfs, ddof=1)),
            "n_bootstrap": len(eers)}


def _asnorm(scores: np.ndarray, z_scores: np.ndarray, t_scores: np.ndarray, top_n: int) -> np.ndarray:
    from speakergmm.verification.normalization import snorm

    top = min(top_n, z_scores.shape[1], t_scores.shape[0])
    return snorm(scores, z_scores, t_scores, top_n=top, min_std=1e-6)


def run(data: str | os.PathLike, out: str | os.PathLike, quick: bool = False, jobs: int = 0, log=None,
        **overrides) -> dict:
    """Run the recipe; returns the results dict written to ``OUT/results.json``."""
    from speakergmm import metrics
    from speakergmm.io import atomic_write_json
    from speakergmm.mixture import map_update
    from speakergmm.verification import SpeakerModels, VerificationError
    from speakergmm.verification.backend import LDA, PLDA, WCCN, Chain, LengthNorm, Whitening, cosine_scores
    from speakergmm.verification.calibration import LinearCalibration
    from speakergmm.verification.ivector import TotalVariability, UtteranceStats, utterance_stats
    from speakergmm.verification.pipeline import (VerifySettings, default_feature_config, prepare_features,
                                                  run_train_ubm)
    from speakergmm.verification.scoring import score_matrix

    cfg = dict(DEFAULTS)
    if quick:
        cfg.update(QUICK)
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise VerificationError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    data, out = Path(data), Path(out)
    say = log or (lambda line: None)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    # The protocol's speakers are chosen from utt2spk first, so that only their audio is
    # read (a quick run reads 400 files, not 1250); utterances whose features could not be
    # computed are then left out of their roles (and listed in ``problems``).
    from speakergmm.corpus import read_data_dir

    listed = read_data_dir(_data_dir(data, out)).spk2utt
    background, evaluation, enroll, tests = protocol(listed, cfg["n_background"], cfg["n_eval"],
                                                     cfg["n_enroll"], cfg["seed"])
    data_dir = _data_dir(data, out, speakers=background + evaluation)
    stage = prepare_features(data_dir, out / "features", default_feature_config(sample_rate=16000), jobs=jobs,
                             log=log)
    corpus, store = stage.value
    problems = list(stage.problems)
    timings["features"] = stage.seconds
    spk2utt = {s: [u for u in utts if u in store] for s, utts in corpus.spk2utt.items()}
    enroll = {s: [u for u in utts if u in store] for s, utts in enroll.items()}
    tests = [u for u in tests if u in store]
    if any(not utts for utts in enroll.values()) or not tests:
        raise VerificationError("an evaluation speaker has no enrolment features, or no test segment has "
                                "features: " + "; ".join(problems[:5]))
    bg_utts = [u for s in background for u in spk2utt[s]]
    bg_labels = np.array([corpus.utt2spk[u] for u in bg_utts])
    say(f"protocol: {len(background)} background speakers ({len(bg_utts)} utterances), {len(evaluation)} "
        f"evaluation speakers enrolled from {cfg['n_enroll']} utterances, {len(tests)} test segments")

    # UBM (background speakers only).
    settings = VerifySettings(n_components=cfg["n_components"], top_c=cfg["top_c"],
                              relevance_factor=cfg["relevance_factor"], jobs=jobs)
    stage = run_train_ubm(store, bg_utts, out / "ubm.npz", settings, log=log)
    ubm = stage.value
    timings["ubm"] = stage.seconds

    # Baum-Welch statistics of every utterance, once.
    t0 = time.perf_counter()
    stats_path = out / "stats.npz"
    wanted = bg_utts + [u for s in evaluation for u in enroll[s]] + tests
    stats = None
    if stats_path.is_file():
        try:
            stats = UtteranceStats.load(stats_path)
            if stats.ubm_fingerprint != ubm.fingerprint() or any(u not in stats for u in wanted):
                stats = None
        except ValueError:
            stats = None
    if stats is None:
        errors: dict[str, str] = {}
        stats = utterance_stats(ubm, store, wanted, jobs=jobs, errors=errors)
        problems.extend(f"utterance {u}: {r}" for u, r in errors.items())
        stats.save(stats_path)
    timings["stats"] = time.perf_counter() - t0

    # GMM-UBM: MAP means from the same statistics; frame-level top-C LLR scoring.
    t0 = time.perf_counter()
    models = SpeakerModels(
        evaluation,
        np.stack([map_update(stats.sufficient_stats(enroll[s], ubm), prior=ubm,
                             relevance_factor=cfg["relevance_factor"], adapt="m").means for s in evaluation]),
        None, None, ubm.fingerprint(), "diag", cfg["relevance_factor"], "m",
        np.array([stats.n_frames[stats.rows(enroll[s])].sum() for s in evaluation]), store.config.to_dict())
    cohort = SpeakerModels(
        background,
        np.stack([map_update(stats.sufficient_stats(spk2utt[s], ubm), prior=ubm,
                             relevance_factor=cfg["relevance_factor"], adapt="m").means for s in background]),
        None, None, ubm.fingerprint(), "diag", cfg["relevance_factor"], "m")
    timings["gmm_enroll"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    gmm_scores = score_matrix(ubm, models, store, tests, top_c=cfg["top_c"], jobs=jobs)
    timings["gmm_score"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    z_utts = bg_utts
    gmm_z = score_matrix(ubm, models, store, z_utts, top_c=cfg["top_c"], jobs=jobs)
    gmm_t = score_matrix(ubm, cohort, store, tests, top_c=cfg["top_c"], jobs=jobs)
    timings["gmm_snorm"] = time.perf_counter() - t0

    # Total-variability matrix and i-vectors.
    t0 = time.perf_counter()
    tv_path = out / "ivector_extractor.npz"
    tv = None
    if tv_path.is_file():
        try:
            tv = TotalVariability.load(tv_path)
            same = (tv.ubm.fingerprint() == ubm.fingerprint() and tv.n_components == cfg["rank"]
                    and tv.n_iter == cfg["t_iter"] and tv.history_ and len(tv.history_) == cfg["t_iter"])
            if not same:
                tv = None
        except ValueError:
            tv = None
    if tv is None:
        tv = TotalVariability(ubm, cfg["rank"], cfg["t_iter"], dtype="float32",
                              checkpoint=out / "ivector_extractor.ckpt", log=log)
        tv.fit(stats.subset(bg_utts))
        tv.save(tv_path)
        (out / "ivector_extractor.ckpt").unlink(missing_ok=True)
    timings["t_matrix"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    all_utts = stats.utterance_ids
    ivectors = dict(zip(all_utts, tv.transform(stats)))
    timings["extract"] = time.perf_counter() - t0

    # Back ends, trained on the background speakers' i-vectors.
    t0 = time.perf_counter()
    X_bg = np.stack([ivectors[u] for u in bg_utts])
    # PLDA chain: whitening and length norm, then (optionally) LDA, then PLDA. With 85
    # background speakers LDA followed by a second length norm lost accuracy (docs).
    lda_dim = min(cfg["lda_dim"], len(background) - 1, cfg["rank"])
    plda_steps = [Whitening(), LengthNorm()] + ([LDA(lda_dim)] if lda_dim > 0 else [])
    plda_chain = Chain(plda_steps + [PLDA(n_iter=cfg["plda_iter"], shrinkage=cfg["plda_shrinkage"])]
                       ).fit(X_bg, bg_labels)
    cos_dim = min(cfg["cosine_lda_dim"], len(background) - 1, cfg["rank"])
    cos_chain = Chain([Whitening(), LengthNorm(), LDA(cos_dim), WCCN(), LengthNorm()]).fit(X_bg, bg_labels)
    plda_chain.save(out / "backend_plda.npz")
    cos_chain.save(out / "backend_cosine.npz")

    def enrol_vectors(chain):
        return np.stack([chain.transform(np.stack([ivectors[u] for u in enroll[s]])).mean(0) for s in evaluation])

    test_iv = np.stack([ivectors[u] for u in tests])
    n_enr = np.array([len(enroll[s]) for s in evaluation])
    # PLDA
    plda = plda_chain.plda
    E = enrol_vectors(plda_chain)
    Tt = plda_chain.transform(test_iv)
    Zb = plda_chain.transform(X_bg)
    # T-norm cohort models: background speakers enrolled like the evaluation speakers.
    cohort_rows = [np.flatnonzero(bg_labels == s)[:cfg["n_enroll"]] for s in background]
    n_coh = np.array([len(r) for r in cohort_rows])
    bg_spk_means = np.stack([Zb[r].mean(0) for r in cohort_rows])
    plda_raw = plda.score(E, Tt, n_enr)
    plda_norm = _asnorm(plda_raw, plda.score(E, Zb, n_enr), plda.score(bg_spk_means, Tt, n_coh),
                        cfg["snorm_top_n"])
    # cosine
    Ec = enrol_vectors(cos_chain)
    Tc = cos_chain.transform(test_iv)
    Zc = cos_chain.transform(X_bg)
    bg_cos_means = np.stack([Zc[r].mean(0) for r in cohort_rows])
    cos_raw = cosine_scores(Ec, Tc)
    cos_norm = _asnorm(cos_raw, cosine_scores(Ec, Zc), cosine_scores(bg_cos_means, Tc), cfg["snorm_top_n"])
    timings["backend_and_scoring"] = time.perf_counter() - t0
    gmm_norm = _asnorm(gmm_scores, gmm_z, gmm_t, cfg["snorm_top_n"])

    # Trials and evaluation.
    test_spk = np.array([corpus.utt2spk[u] for u in tests])
    model_spk = np.array(evaluation)
    M, N = len(evaluation), len(tests)
    mspk = np.repeat(model_spk, N)
    tspk = np.tile(test_spk, M)
    labels = mspk == tspk
    systems = {"gmm-ubm": gmm_scores.ravel(), "gmm-ubm-snorm": gmm_norm.ravel(),
               "ivector-cosine": cos_norm.ravel(), "ivector-cosine-raw": cos_raw.ravel(),
               "ivector-plda": plda_raw.ravel(), "ivector-plda-snorm": plda_norm.ravel()}
    from speakergmm.verification.pipeline import write_scores

    trial_list = [(m, u, m == corpus.utt2spk[u]) for m in evaluation for u in tests]
    for name, values in systems.items():
        write_scores(out / "scores" / f"{name}.txt", trial_list, values)
    op = metrics.DCFOperatingPoint(cfg["p_target"])
    # Held-out calibration: the two halves of the evaluation speakers.
    half = {s: i % 2 for i, s in enumerate(evaluation)}
    mh = np.array([half[s] for s in mspk])
    th = np.array([half[s] for s in tspk])
    within = mh == th
    fused_inputs = list(FUSED)
    calibrated: dict[str, np.ndarray] = {}
    for name in list(systems) + ["fusion"]:
        cols = fused_inputs if name == "fusion" else [name]
        S = np.column_stack([systems[c] for c in cols])
        llr = np.full(len(labels), np.nan)
        for h in (0, 1):
            train = within & (mh == h)
            test = within & (mh == 1 - h)
            cal = LinearCalibration(p_target=op.effective_prior).fit(S[train], labels[train])
            llr[test] = cal.transform(S[test])
        calibrated[name] = llr
    write_scores(out / "scores" / "fusion_held_out.txt",
                 [t for t, w in zip(trial_list, within) if w], calibrated["fusion"][within])
    results: dict = {"dataset": "speechocean762 (train speakers)", "data": str(data), "protocol": {
        "n_background_speakers": len(background), "n_evaluation_speakers": len(evaluation),
        "n_background_utterances": len(bg_utts), "enrolment_utterances_per_speaker": cfg["n_enroll"],
        "n_test_segments": len(tests), "n_trials": int(labels.size), "seed": cfg["seed"],
        "held_out": "evaluation speakers in two halves; calibration/fusion trained on the trials within "
                    "one half, applied to the trials within the other, both ways"},
        "settings": cfg, "operating_point": {"p_target": op.p_target, "c_miss": op.c_miss, "c_fa": op.c_fa},
        "backends": {}, "problems": problems}
    curves = {}
    for name in list(systems) + ["fusion"]:
        entry: dict = {}
        if name in systems:
            s = systems[name]
            full = metrics.evaluate_scores(s[labels], s[~labels], {"dcf": op})
            entry.update({k: full[k] for k in ("eer", "eer_kaldi", "n_target", "n_nontarget")})
            entry["min_dcf"] = full["min_dcf_dcf"]
            entry.update(_bootstrap(s, mspk, tspk, cfg["bootstrap"], cfg["seed"], op.p_target))
            if name in BACKENDS:
                curves[name] = (s[labels], s[~labels])
        llr = calibrated[name]
        tar, non = llr[within & labels], llr[within & ~labels]
        raw_within = None if name == "fusion" else systems[name][within]
        held = {"n_target": int(tar.size), "n_nontarget": int(non.size),
                "eer": metrics.eer(tar, non), "eer_kaldi": metrics.kaldi_eer(tar, non)[0],
                "min_dcf": metrics.min_dcf(tar, non, operating_point=op)[0],
                "actual_dcf": metrics.actual_dcf(tar, non, operating_point=op), "cllr": metrics.cllr(tar, non)}
        if raw_within is not None:
            lw = labels[within]
            held["eer_uncalibrated"] = metrics.eer(raw_within[lw], raw_within[~lw])
        held.update(_bootstrap(llr[within], mspk[within], tspk[within], cfg["bootstrap"], cfg["seed"],
                               op.p_target))
        held["actual_over_min_dcf"] = held["actual_dcf"] / held["min_dcf"] if held["min_dcf"] > 0 else None
        entry["held_out"] = held
        if name == "fusion":
            entry.update({"eer": held["eer"], "eer_kaldi": held["eer_kaldi"], "min_dcf": held["min_dcf"],
                          "n_target": held["n_target"],
                          "n_nontarget": held["n_nontarget"], "eer_se": held["eer_se"],
                          "min_dcf_se": held["min_dcf_se"], "trials": "held-out within-half trials"})
            curves["fusion (held-out)"] = (tar, non)
        results["backends"][name] = entry
    base = results["backends"]["gmm-ubm"]
    for name, entry in results["backends"].items():
        entry["held_out"]["eer_ratio_to_gmm_ubm"] = (entry["held_out"]["eer"] / base["held_out"]["eer"]
                                                     if base["held_out"]["eer"] > 0 else None)
        if name != "fusion":
            entry["eer_ratio_to_gmm_ubm"] = entry["eer"] / base["eer"] if base["eer"] > 0 else None
    try:
        from speakergmm.plotting import plot_det

        results["det_plot"] = str(plot_det(curves, out / "det.png", operating_points=(),
                                           title="speechocean762: GMM-UBM vs i-vector back ends"))
    except ImportError as exc:
        results["det_plot"] = None
        results["det_plot_error"] = str(exc)
    timings["total"] = time.perf_counter() - started
    results["timings"] = {k: round(v, 3) for k, v in timings.items()}
    results["t_matrix_history"] = tv.history_
    atomic_write_json(out / "results.json", results)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from speakergmm.verification import VerificationError

    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    overrides = {k: getattr(args, k) for k in DEFAULTS}
    try:
        results = run(args.data, args.out, quick=args.quick, jobs=args.jobs, log=log, **overrides)
    except (VerificationError, OSError) as exc:
        print(f"so762_verification: {exc}", file=sys.stderr)
        return 1
    for name, entry in results["backends"].items():
        held = entry["held_out"]
        print(f"{name:19s} EER {100 * entry['eer']:5.2f} ± {100 * entry['eer_se']:.2f} %  "
              f"minDCF {entry['min_dcf']:.3f} ± {entry['min_dcf_se']:.3f}   held-out: EER "
              f"{100 * held['eer']:5.2f} %, actDCF {held['actual_dcf']:.3f} / minDCF {held['min_dcf']:.3f}")
    print("times (s): " + ", ".join(f"{k} {v:.2f}" for k, v in results["timings"].items()))
    print(f"results: {Path(args.out) / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
