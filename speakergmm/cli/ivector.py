"""``speakergmm train-ivector | extract-ivectors | train-plda | calibrate``: i-vector / PLDA
stages, and calibration / fusion of score files.

The whole chain is ``speakergmm verify --backend ivector-plda``; these commands run its
stages one at a time. Exit status: 0 success; 3 finished but skipped some utterances; 2 bad
arguments; 1 bad input (missing or malformed data directory or model file).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from speakergmm.cli.scale import add_scheduler_option, with_cluster
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
    add_scheduler_option(p)
    p.set_defaults(func=with_cluster("train-ivector", _run_train_ivector))

    p = subparsers.add_parser(
        "extract-ivectors", help="extract one i-vector per utterance of a data directory",
        description="Extract i-vectors (posterior means of the latent factor) of every utterance.",
        epilog=_EXTRACT_EPILOG, formatter_class=_fmt())
    p.add_argument("--data", required=True, metavar="DIR")
    p.add_argument("--extractor", required=True, metavar="EXTRACTOR.npz", help="from train-ivector")
    p.add_argument("--out", required=True, metavar="IVECTORS.npz")
    p.add_argument("--feats", metavar="DIR", help="feature cache (default: features/<data name> next to --out)")
    _add_run_options(p)
    add_scheduler_option(p)
    p.set_defaults(func=with_cluster("extract-ivectors", _run_extract))

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

    register_calibrate(subparsers)


_CALIBRATE_EPILOG = """\
examples:
  # learn a calibration on labelled development scores, apply it to evaluation scores
  speakergmm calibrate --train dev/scores.txt --out exp/calibration.npz
  speakergmm calibrate --model exp/calibration.npz --apply eval/scores.txt --out eval/llr.txt

  # fuse two systems (the same trials in both files), at the SRE16 prior
  speakergmm calibrate --train dev/gmm.txt dev/plda.txt --p-target 0.01 --out exp/fusion.npz
  speakergmm calibrate --model exp/fusion.npz --apply eval/gmm.txt eval/plda.txt --out eval/fused.txt

Score files: 'model test-utt score [target|nontarget]' lines (labels from --trials otherwise).
""" + _EPILOG


def register_calibrate(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "calibrate", help="calibrate or fuse score files (logistic regression, as in BOSARIS)",
        description="With --train: fit llr = w's + b on labelled score files (one per system, same "
                    "trials) by prior-weighted logistic regression and save it. With --model and --apply: "
                    "write calibrated (fused) log-likelihood ratios.",
        epilog=_CALIBRATE_EPILOG, formatter_class=_fmt())
    p.add_argument("--train", nargs="+", metavar="SCORES", help="labelled development score files")
    p.add_argument("--trials", metavar="FILE", help="trial list with the labels (if the score files have none)")
    p.add_argument("--p-target", type=float, default=0.5, help="training prior (default 0.5, as BOSARIS)")
    p.add_argument("--model", metavar="CAL.npz", help="calibration to apply (from --train)")
    p.add_argument("--apply", nargs="+", metavar="SCORES", help="score files to calibrate (same systems)")
    p.add_argument("--out", required=True, help="CAL.npz with --train; the output score file with --apply")
    p.set_defaults(func=_run_calibrate)


def _aligned_scores(paths: list[str], trials_path: str | None, need_labels: bool):
    """Scores of several files on the trials they share, in the first file's order."""
    import numpy as np

    from speakergmm.verification.pipeline import read_scores

    columns, keys, labels = [], None, None
    for path in paths:
        if need_labels:
            trials, values = read_scores(path, trials_path)
        else:
            trials, values = _read_unlabelled(path)
        table = {(t[0], t[1]): (v, t[2]) for t, v in zip(trials, values)}
        if keys is None:
            keys = [(t[0], t[1]) for t in trials]
            labels = [t[2] for t in trials]
        missing = [k for k in keys if k not in table]
        if missing:
            from speakergmm.verification import VerificationError

            raise VerificationError(f"{path}: no score for trial {missing[0][0]} {missing[0][1]} "
                                    f"(and {len(missing) - 1} more) of {paths[0]}")
        columns.append([table[k][0] for k in keys])
    return keys, labels, np.column_stack(columns)


def _read_unlabelled(path: str):
    """Score lines with or without labels (labels, when present, are carried along)."""
    import numpy as np

    from speakergmm.verification import VerificationError

    trials, values = [], []
    p = Path(path)
    if not p.is_file():
        raise VerificationError(f"{path}: no such score file")
    for number, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (3, 4):
            raise VerificationError(f"{path}:{number}: expected 'model test-utt score [label]'")
        try:
            value = float(parts[2])
        except ValueError:
            raise VerificationError(f"{path}:{number}: score {parts[2]!r} is not a number") from None
        label = None if len(parts) == 3 else parts[3] == "target"
        trials.append((parts[0], parts[1], label))
        values.append(value)
    return trials, np.array(values)


def _run_calibrate(args: argparse.Namespace) -> int:
    import numpy as np

    from speakergmm.verification.calibration import LinearCalibration
    from speakergmm.verification.pipeline import write_scores

    cmd = "calibrate"
    if bool(args.train) == bool(args.model or args.apply):
        return _fail(cmd, "give either --train FILES, or --model CAL.npz with --apply FILES", EXIT_USAGE)
    if args.model and not args.apply or args.apply and not args.model:
        return _fail(cmd, "--apply needs --model (and --model needs --apply)", EXIT_USAGE)
    try:
        if args.train:
            try:
                cal = LinearCalibration(p_target=args.p_target)
            except ValueError as exc:
                return _fail(cmd, str(exc), EXIT_USAGE)
            keys, labels, S = _aligned_scores(args.train, args.trials, need_labels=True)
            cal.fit(S, np.array(labels, dtype=bool))
            cal.save(args.out)
            print(f"calibration of {S.shape[1]} system(s) on {len(keys)} trials: weights "
                  f"{', '.join(f'{w:.4g}' for w in cal.coef_)}, offset {cal.intercept_:.4g} -> {args.out}")
        else:
            cal = LinearCalibration.load(args.model)
            keys, labels, S = _aligned_scores(args.apply, None, need_labels=False)
            llr = cal.transform(S)
            write_scores(args.out, [(k[0], k[1], lab) for k, lab in zip(keys, labels)], llr)
            print(f"{len(keys)} calibrated scores -> {args.out}")
    except _common_errors() as exc:
        return _fail(cmd, str(exc))
    return EXIT_OK


def _stats_for(cmd: str, args: argparse.Namespace, ubm, feature_config, out: Path):
    from speakergmm.verification.ivector_chain import run_stats
    from speakergmm.verification.pipeline import prepare_features

    if not Path(args.data).is_dir():
        raise _Usage(f"--data {args.data}: no such directory")
    feats = Path(args.feats) if args.feats else _default_feats(str(out), args.data)
    client = getattr(args, "client", None)
    stage = prepare_features(args.data, feats, feature_config, jobs=args.jobs, log=_log(args),
                             show_progress=args.progress, client=client)
    data_dir, store = stage.value
    stats_path = out.parent / f"stats_{Path(args.data).resolve().name}.npz"
    stats, problems = run_stats(ubm, store, data_dir.utterances, stats_path, jobs=args.jobs, log=_log(args),
                                client=client)
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
