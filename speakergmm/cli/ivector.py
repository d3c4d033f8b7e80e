"""``speakergmm train-ivector | extract-ivectors | train-plda``: i-vector / PLDA stages.

The whole chain is ``speakergmm verify --backend ivector-plda``; these commands run its
stages one at a time. Exit status: 0 success; 3 finished but skipped some utterances; 2 bad
arguments; 1 bad input (missing or malformed data directory or model file).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from speakergmm.cli.verification import (EXIT_OK, EXIT_USAGE, _add_run_options, _common_errors,
                                         _default_feats, _fail, _fmt, _log, _positive_int, _report_problems)

_EPILOG = """
exit status: 0 success; 3 finished but skipped some utterances (listed); 2 bad arguments;
1 bad input (missing/malformed data directory or model file).
"""

_TRAIN_EPILOG = """\
examples:
  # T matrix of rank 150 on the UBM data (10 EM passes with minimum divergence)
  speakergmm train-ivector --data data/train --ubm exp/ubm.npz --out exp/ivector_extractor.npz

  speakergmm train-ivector --data data/train --ubm exp/ubm.npz --out exp/tv.npz --rank 100 --iter 5

The Baum-Welch statistics are kept in OUT's folder (stats_<data name>.npz) for the other
stages; an interrupted run resumes from OUT.ckpt.
""" + _EPILOG

_EXTRACT_EPILOG = """\
examples:
  speakergmm extract-ivectors --data data/test --extractor exp/ivector_extractor.npz \\
      --out exp/ivectors_test.npz
""" + _EPILOG

_PLDA_EPILOG = """\
examples:
  # whitening, length norm, two-covariance PLDA (10 EM iterations, shrinkage 0.1)
  speakergmm train-plda --ivectors exp/ivectors_train.npz --data data/train --out exp/backend.npz

  # with LDA to 60 dimensions first
  speakergmm train-plda --ivectors exp/ivectors_train.npz --data data/train --out exp/backend.npz --lda-dim 60
""" + _EPILOG


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train-ivector``, ``extract-ivectors`` and ``train-plda``."""
    p = subparsers.add_parser(
        "train-ivector", help="train a total-variability (i-vector) matrix on a data directory",
        description="Train the total-variability matrix T by EM (minimum divergence) on the Baum-Welch "
                    "statistics of a data directory under a UBM. Resumable.",
        epilog=_TRAIN_EPILOG, formatter_class=_fmt())
    p.add_argument("--data", required=True, metavar="DIR", help="data directory (wav.scp, utt2spk)")
    p.add_argument("--ubm", required=True, metavar="UBM.npz", help="diagonal UBM from train-ubm")
    p.add_argument("--out", required=True, metavar="EXTRACTOR.npz", help="model file to write")
    p.add_argument("--feats", metavar="DIR", help="feature cache (default: features/<data name> next to --out)")
    p.add_argument("--rank", type=_positive_int, default=150, help="i-vector dimension (default: 150)")
    p.add_argument("--iter", type=int, default=10, help="EM passes (default: 10)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="E-step precision (default: float32)")
    _add_run_options(p)
    p.set_defaults(func=_run_train_ivector)

    p = subparsers.add_parser(
        "extract-ivectors", help="extract one i-vector per utterance of a data directory",
        description="Extract i-vectors (posterior means of the latent factor) of every utterance.",
        epilog=_EXTRACT_EPILOG, formatter_class=_fmt())
    p.add_argument("--data", required=True, metavar="DIR")
    p.add_argument("--extractor", required=True, metavar="EXTRACTOR.npz", help="from train-ivector")
    p.add_argument("--out", required=True, metavar="IVECTORS.npz")
    p.add_argument("--feats", metavar="DIR", help="feature cache (default: features/<data name> next to --out)")
    _add_run_options(p)
    p.set_defaults(func=_run_extract)

    p = subparsers.add_parser(
        "train-plda", help="train the i-vector back end (whitening, length norm, LDA, PLDA)",
        description="Fit whitening, length norm, optional LDA and a two-covariance PLDA on "
                    "i-vectors with the speaker labels of a data directory's utt2spk.",
        epilog=_PLDA_EPILOG, formatter_class=_fmt())
    p.add_argument("--ivectors", required=True, metavar="IVECTORS.npz", help="from extract-ivectors")
    p.add_argument("--data", required=True, metavar="DIR", help="data directory whose utt2spk labels them")
    p.add_argument("--out", required=True, metavar="BACKEND.npz")
    p.add_argument("--lda-dim", type=int, default=0, help="LDA dimension; 0 = no LDA (default)")
    p.add_argument("--plda-iter", type=int, default=10, help="PLDA EM iterations (default: 10)")
    p.add_argument("--shrinkage", type=float, default=0.1,
                   help="PLDA covariance shrinkage in [0, 1) (default: 0.1)")
    p.add_argument("--quiet", "-q", action="store_true", help="no log lines on stderr")
    p.set_defaults(func=_run_train_plda)


def _stats_for(cmd: str, args: argparse.Namespace, ubm, feature_config, out: Path):
    from speakergmm.verification.ivector_chain import run_stats
    from speakergmm.verification.pipeline import prepare_features

    if not Path(args.data).is_dir():
        raise _Usage(f"--data {args.data}: no such directory")
    feats = Path(args.feats) if args.feats else _default_feats(str(out), args.data)
    stage = prepare_features(args.data, feats, feature_config, jobs=args.jobs, log=_log(args),
                             show_progress=args.progress)
    data_dir, store = stage.value
    stats_path = out.parent / f"stats_{Path(args.data).resolve().name}.npz"
    stats, problems = run_stats(ubm, store, data_dir.utterances, stats_path, jobs=args.jobs, log=_log(args))
    return stats, list(stage.problems) + problems


class _Usage(Exception):
    pass


def _run_train_ivector(args: argparse.Namespace) -> int:
    from speakergmm.verification.ivector_chain import IvectorSettings, run_train_ivector
    from speakergmm.verification.pipeline import ubm_feature_config
    from speakergmm.verification.ubm import load_ubm

    cmd = "train-ivector"
    try:
        settings = IvectorSettings(rank=args.rank, t_iter=args.iter, t_dtype=args.dtype)
    except ValueError as exc:
        return _fail(cmd, str(exc), EXIT_USAGE)
    try:
        ubm, meta = load_ubm(args.ubm)
        out = Path(args.out)
        stats, problems = _stats_for(cmd, args, ubm, ubm_feature_config(meta), out)
        tv = run_train_ivector(ubm, stats, out, settings, log=_log(args), show_progress=args.progress,
                               feature_config=meta.get("feature_config"))
    except _Usage as exc:
        return _fail(cmd, str(exc))
    except _common_errors() as exc:
        return _fail(cmd, str(exc))
    log = _log(args)
    if log:
        log(f"train-ivector: T of rank {tv.n_components} -> {out}")
    return _report_problems(cmd, problems)


def _run_extract(args: argparse.Namespace) -> int:
    from speakergmm.verification.ivector import TotalVariability
    from speakergmm.verification.ivector_chain import extract, save_ivectors

    cmd = "extract-ivectors"
    try:
        tv = TotalVariability.load(args.extractor)
        out = Path(args.out)
        from speakergmm.features import FeatureConfig
        from speakergmm.verification.pipeline import default_feature_config

        recorded = tv.info.get("feature_config")
        config = (FeatureConfig.from_dict(recorded) if recorded
                  else default_feature_config(args.data if Path(args.data).is_dir() else None))
        stats, problems = _stats_for(cmd, args, tv.ubm, config, out)
        vectors = extract(tv, stats)
        import numpy as np

        save_ivectors(out, list(vectors), np.stack(list(vectors.values())),
                      {"extractor": str(args.extractor), "data": str(args.data)})
    except _Usage as exc:
        return _fail(cmd, str(exc))
    except _common_errors() as exc:
        return _fail(cmd, str(exc))
    log = _log(args)
    if log:
        log(f"extract-ivectors: {len(vectors)} i-vectors -> {out}")
    return _report_problems(cmd, problems)


def _run_train_plda(args: argparse.Namespace) -> int:
    from speakergmm.corpus import CorpusError, read_data_dir
    from speakergmm.verification.ivector_chain import IvectorSettings, load_ivectors, run_train_backend

    cmd = "train-plda"
    try:
        settings = IvectorSettings(lda_dim=args.lda_dim, plda_iter=args.plda_iter, plda_shrinkage=args.shrinkage)
    except ValueError as exc:
        return _fail(cmd, str(exc), EXIT_USAGE)
    if not Path(args.data).is_dir():
        return _fail(cmd, f"--data {args.data}: no such directory")
    try:
        ids, X, _ = load_ivectors(args.ivectors)
        data = read_data_dir(args.data)
        problems = [f"utterance {u}: not in {args.data}/utt2spk; left out" for u in ids if u not in data.utt2spk]
        keep = [i for i, u in enumerate(ids) if u in data.utt2spk]
        if not keep:
            return _fail(cmd, f"none of the i-vectors of {args.ivectors} is labelled in {args.data}/utt2spk")
        run_train_backend(X[keep], [data.utt2spk[ids[i]] for i in keep], args.out, settings, log=_log(args))
    except CorpusError as exc:
        return _fail(cmd, f"invalid data directory {args.data}: {exc}")
    except _common_errors() as exc:
        return _fail(cmd, str(exc))
    return _report_problems(cmd, problems) if problems else EXIT_OK


__all__ = ["register"]
