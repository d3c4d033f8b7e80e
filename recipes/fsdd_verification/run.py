#!/usr/bin/env python
"""GMM-UBM speaker verification on the Free Spoken Digit Dataset (FSDD).

Protocol (6 speakers, files ``{digit}_{speaker}_{index}.wav``, index 0-4 test, 5-49 train):

- **train**: UBM on the train split of all speakers; each speaker enrolled from its own
  train split (450 utterances); every test utterance (300) scored against every speaker
  model: 1800 trials, 300 target and 1500 non-target.
- **digits** (harder): the same UBM and trials, but each speaker enrolled from one
  utterance of each digit only (index 5: 10 utterances, about 4 s of speech).

Writes ``OUT/results.json`` (the train protocol, as ``speakergmm evaluate`` does, with the
digits protocol summarised under ``"digits_protocol"`` and per-stage times under
``"timings"``), ``OUT/digits/results.json``, the DET plots, the score files, the models and
the feature cache. A rerun reuses the features, the UBM and the models.

Usage::

    python recipes/fsdd_verification/run.py                      # data from ../shared/data/fsdd/recordings
    python recipes/fsdd_verification/run.py --data PATH --out exp/fsdd -k 128 -j 2

The data path defaults to ``$SPEAKERGMM_FSDD`` or ``../shared/data/fsdd/recordings``
relative to the repository root.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = Path(os.environ.get("SPEAKERGMM_FSDD", REPO.parent / "shared" / "data" / "fsdd" / "recordings"))

if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="see the module docstring and docs/verification.md")
    p.add_argument("--data", default=str(DEFAULT_DATA), help=f"FSDD recordings folder (default: {DEFAULT_DATA})")
    p.add_argument("--out", default=str(REPO / "exp" / "fsdd_verification"), help="output directory")
    p.add_argument("--n-components", "-k", type=int, default=None,
                   help="UBM size (default: chosen from the data, 256 on FSDD)")
    p.add_argument("--top-c", type=int, default=5, help="components per frame in scoring (default: 5)")
    p.add_argument("--relevance-factor", "-r", type=float, default=16.0, help="MAP relevance factor (16)")
    p.add_argument("--protocols", default="train,digits", help="comma-separated: train, digits (default: both)")
    p.add_argument("--jobs", "-j", type=int, default=0, help="worker processes; 0 = all cores")
    p.add_argument("--quiet", "-q", action="store_true")
    return p.parse_args(argv)


def run(data: str | os.PathLike, out: str | os.PathLike, n_components: int | None = None, top_c: int = 5,
        relevance_factor: float = 16.0, protocols: tuple[str, ...] = ("train", "digits"), jobs: int = 0,
        log=None, settings=None, feature_config=None) -> dict:
    """Run the recipe; returns the train protocol's results dict (see the module docstring).

    ``settings`` (a :class:`~speakergmm.verification.pipeline.VerifySettings`) replaces the
    one built from ``n_components``, ``top_c``, ``relevance_factor`` and ``jobs``;
    ``feature_config`` (a :class:`~speakergmm.features.FeatureConfig`) replaces the recipe's
    front end.
    """
    from speakergmm.corpus import Trial, make_data_dir, write_trials
    from speakergmm.io import atomic_write_json
    from speakergmm.verification import VerificationError
    from speakergmm.verification.pipeline import (VerifySettings, default_feature_config, evaluate_trials,
                                                  prepare_features, run_enroll, run_score, run_train_ubm,
                                                  write_scores)

    unknown = set(protocols) - {"train", "digits"}
    if unknown or not protocols:
        raise VerificationError(f"unknown protocol(s) {', '.join(sorted(unknown)) or '(none)'}: choose train, digits")
    data, out = Path(data), Path(out)
    if not data.is_dir() or not any(data.glob("*.wav")):
        raise VerificationError(f"{data}: no FSDD recordings there (give --data or set SPEAKERGMM_FSDD)")
    started = time.perf_counter()
    if settings is None:
        settings = VerifySettings(n_components=n_components, top_c=top_c, relevance_factor=relevance_factor,
                                  jobs=jobs)
    jobs = settings.jobs
    timings: dict[str, float] = {}

    # Data: one directory of every file, the splits are lists of its utterances.
    t0 = time.perf_counter()
    corpus = make_data_dir(data, out / "data" / "all").data
    index = {u: int(i) for u, i in corpus.fields["index"].items()}
    digit = corpus.fields["digit"]
    train = [u for u in corpus.utterances if index[u] >= 5]
    test = [u for u in corpus.utterances if index[u] <= 4]
    speakers = corpus.speakers
    trials = [Trial(s, u, corpus.utt2spk[u] == s) for u in test for s in speakers]
    write_trials(out / "data" / "trials", trials)
    enroll_sets = {
        "train": {s: [u for u in train if corpus.utt2spk[u] == s] for s in speakers},
        "digits": {s: sorted((u for u in train if corpus.utt2spk[u] == s and index[u] == 5),
                             key=lambda u: int(digit[u])) for s in speakers},
    }
    timings["data"] = time.perf_counter() - t0

    config = feature_config if feature_config is not None else default_feature_config(sample_rate=8000)
    stage = prepare_features(out / "data" / "all", out / "features", config, jobs=jobs, log=log)
    _, store = stage.value
    timings["features"] = stage.seconds
    problems = list(stage.problems)

    stage = run_train_ubm(store, train, out / "ubm.npz", settings, log=log)
    ubm = stage.value
    timings["ubm"] = stage.seconds

    summaries: dict[str, dict] = {}
    main_results: dict | None = None
    for name in protocols:
        where = out if name == "train" else out / name
        enrolled = run_enroll(ubm, store, enroll_sets[name], where / "speakers.npz", settings, log=log)
        timings[f"enroll_{name}"] = enrolled.seconds
        scored = run_score(ubm, enrolled.value, store, trials, settings, log=log)
        timings[f"score_{name}"] = scored.seconds
        write_scores(where / "scores.txt", trials, scored.value)
        t0 = time.perf_counter()
        results = evaluate_trials([(t.enroll, t.test, t.target) for t in trials], scored.value, where,
                                  title=f"GMM-UBM on FSDD ({name} enrolment)",
                                  extra={"protocol": name, "dataset": "Free Spoken Digit Dataset",
                                         "data": str(data), "ubm_components": ubm.n_components,
                                         "enrolment_utterances_per_speaker":
                                             {s: len(u) for s, u in enroll_sets[name].items()},
                                         "settings": settings.to_dict(), "feature_config": config.to_dict(),
                                         "problems": problems + enrolled.problems + scored.problems})
        timings[f"evaluate_{name}"] = time.perf_counter() - t0
        summaries[name] = {k: results[k] for k in ("eer", "min_dcf", "min_dcf_sre10", "actual_dcf_sre08",
                                                   "cllr", "identification_accuracy", "n_target",
                                                   "n_nontarget")}
        if log:
            log(f"{name}: EER {100 * results['eer']:.2f}%, minDCF(SRE08) {results['min_dcf']:.4f}, "
                f"identification {100 * results['identification_accuracy']:.2f}%")
        if name == "train" or main_results is None:
            main_results = results
        if name != "train":
            atomic_write_json(where / "results.json", results)
    timings["total"] = time.perf_counter() - started
    assert main_results is not None
    main_results["timings"] = {k: round(v, 3) for k, v in timings.items()}
    main_results["protocols"] = summaries
    if "digits" in summaries:
        main_results["digits_protocol"] = summaries["digits"]
    atomic_write_json(out / "results.json", main_results)
    return main_results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from speakergmm.verification import VerificationError

    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    try:
        results = run(args.data, args.out, n_components=args.n_components, top_c=args.top_c,
                      relevance_factor=args.relevance_factor,
                      protocols=tuple(p.strip() for p in args.protocols.split(",") if p.strip()),
                      jobs=args.jobs, log=log)
    except (VerificationError, OSError) as exc:
        print(f"fsdd_verification: {exc}", file=sys.stderr)
        return 1
    for name, summary in results["protocols"].items():
        print(f"{name:7s} EER {100 * summary['eer']:5.2f} %  minDCF(SRE08) {summary['min_dcf']:.4f}  "
              f"minDCF(SRE10) {summary['min_dcf_sre10']:.4f}  ID accuracy "
              f"{100 * summary['identification_accuracy']:.2f} %")
    print("times (s): " + ", ".join(f"{k} {v:.2f}" for k, v in results["timings"].items()))
    print(f"results: {Path(args.out) / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
