#!/usr/bin/env python
"""Benchmark: the i-vector / PLDA chain against the GMM-UBM chain on the speechocean762 recipe.

Both chains run in the same process on the recipe's protocol (85 background speakers, 40
evaluation speakers enrolled from 3 utterances, 11200 trials) from the same cached features:

- GMM-UBM chain: UBM training, MAP enrolment, top-5 LLR scoring of every trial;
- i-vector chain: UBM training, Baum-Welch statistics of every utterance (once), T-matrix
  training, extraction, back end (whitening, length norm, PLDA: the recipe's), PLDA scoring of every trial.

The UBM is trained once per repeat and counted in both chains (each needs it). Prints one JSON
line with wall-clock and CPU seconds per stage (median over ``--repeat`` runs) and the ratio
``ivector_chain / gmm_ubm_chain``; the target is at most 2.

Usage::

    python scripts/bench_ivector.py --data ../shared/data/speechocean762-train [--repeat 3] [-j 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "recipes" / "so762_verification"))


class _Clock:
    def __init__(self) -> None:
        self.wall: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}

    def __call__(self, name: str, func, *args, **kwargs):
        w0, c0 = time.perf_counter(), time.process_time()
        value = func(*args, **kwargs)
        self.wall.setdefault(name, []).append(time.perf_counter() - w0)
        self.cpu.setdefault(name, []).append(time.process_time() - c0)
        return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "speechocean762-train"))
    p.add_argument("--work", default=None, help="feature cache folder (default: a temporary one)")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--jobs", "-j", type=int, default=1)
    p.add_argument("--n-components", type=int, default=256)
    p.add_argument("--rank", type=int, default=150)
    p.add_argument("--t-iter", type=int, default=10)
    args = p.parse_args(argv)

    import run as recipe
    from speakergmm.mixture import map_update
    from speakergmm.verification import SpeakerModels, enroll_speakers
    from speakergmm.verification.backend import PLDA, Chain, LengthNorm, Whitening
    from speakergmm.verification.ivector import TotalVariability, utterance_stats
    from speakergmm.verification.pipeline import (VerifySettings, default_feature_config, prepare_features,
                                                  run_train_ubm)
    from speakergmm.verification.scoring import score_matrix

    work = Path(args.work or tempfile.mkdtemp(prefix="bench-ivector-"))
    data_dir = recipe._data_dir(Path(args.data), work)
    corpus, store = prepare_features(data_dir, work / "features", default_feature_config(sample_rate=16000),
                                     jobs=args.jobs, log=None).value
    background, evaluation, enroll, tests = recipe.protocol(corpus.spk2utt, 85, 40, 3, 0)
    bg_utts = [u for s in background for u in corpus.spk2utt[s]]
    bg_labels = np.array([corpus.utt2spk[u] for u in bg_utts])
    clock = _Clock()
    for r in range(args.repeat):
        settings = VerifySettings(n_components=args.n_components, jobs=args.jobs)
        ubm_path = work / f"ubm_{r}.npz"
        ubm_path.unlink(missing_ok=True)
        ubm = clock("ubm", run_train_ubm, store, bg_utts, ubm_path, settings, log=None).value
        # GMM-UBM chain
        models = clock("gmm_enroll", enroll_speakers, ubm, store, enroll, jobs=args.jobs)
        clock("gmm_score", score_matrix, ubm, models, store, tests, jobs=args.jobs)
        # i-vector chain
        wanted = bg_utts + [u for s in evaluation for u in enroll[s]] + tests
        stats = clock("stats", utterance_stats, ubm, store, wanted, jobs=args.jobs)
        tv = TotalVariability(ubm, args.rank, args.t_iter, dtype="float32")
        clock("t_matrix", tv.fit, stats.subset(bg_utts))
        ivectors = clock("extract", tv.transform, stats)
        iv = dict(zip(stats.utterance_ids, ivectors))

        def backend_and_score():
            chain = Chain([Whitening(), LengthNorm(), PLDA(10, shrinkage=0.1)]).fit(
                np.stack([iv[u] for u in bg_utts]), bg_labels)
            E = np.stack([chain.transform(np.stack([iv[u] for u in enroll[s]])).mean(0) for s in evaluation])
            return chain.plda.score(E, chain.transform(np.stack([iv[u] for u in tests])), 3)

        clock("backend_and_score", backend_and_score)
        # MAP enrolment from the same statistics (no second pass over the frames).
        clock("gmm_enroll_from_stats", lambda: SpeakerModels(
            evaluation, np.stack([map_update(stats.sufficient_stats(enroll[s], ubm), prior=ubm).means
                                  for s in evaluation]), None, None, ubm.fingerprint(), "diag"))

    med = {k: float(np.median(v)) for k, v in clock.wall.items()}
    cpu = {k: float(np.median(v)) for k, v in clock.cpu.items()}
    gmm_chain = med["ubm"] + med["gmm_enroll"] + med["gmm_score"]
    iv_chain = med["ubm"] + med["stats"] + med["t_matrix"] + med["extract"] + med["backend_and_score"]
    gmm_cpu = cpu["ubm"] + cpu["gmm_enroll"] + cpu["gmm_score"]
    iv_cpu = cpu["ubm"] + cpu["stats"] + cpu["t_matrix"] + cpu["extract"] + cpu["backend_and_score"]
    print(json.dumps({
        "benchmark": "ivector_vs_gmm_ubm_chain", "data": "speechocean762 recipe protocol",
        "n_utterances": len(wanted), "n_trials": len(evaluation) * len(tests),
        "n_components": args.n_components, "rank": args.rank, "t_iter": args.t_iter, "jobs": args.jobs,
        "repeat": args.repeat, "wall_s": {k: round(v, 3) for k, v in med.items()},
        "cpu_s": {k: round(v, 3) for k, v in cpu.items()},
        "t_matrix_s_per_pass": round(med["t_matrix"] / max(args.t_iter, 1), 3),
        "gmm_ubm_chain_s": round(gmm_chain, 3), "ivector_chain_s": round(iv_chain, 3),
        "ratio_wall": round(iv_chain / gmm_chain, 3), "ratio_cpu": round(iv_cpu / gmm_cpu, 3),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, shared",
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
