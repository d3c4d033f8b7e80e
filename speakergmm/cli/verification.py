"""``speakergmm train-ubm | enroll | score | evaluate | verify``: GMM-UBM speaker verification.

Exit status of every subcommand (speakergmm.exit_codes): 0 on success; 3 when the job finished
but skipped some utterances or speakers, or scored some trials on fallback features or with
the unscorable score (listed on stderr and in the outputs); 2 for bad arguments; 1 for bad
inputs (missing or malformed data directory, trial list, score or model file...).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from speakergmm.cli.scale import add_scheduler_option, with_cluster
from speakergmm.exit_codes import EXIT_INPUT, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE

logger = logging.getLogger(__name__)

#: Library parameter names -> the options that set them (for error messages).
_FLAGS = {
    "data_dir": "--data", "ubm_data": "--ubm-data", "enroll_data": "--enroll-data",
    "test_data": "--test-data", "cohort_data": "--cohort-data", "cohort": "--cohort-data",
    "trials_path": "--trials", "scores": "--scores", "n_components": "--n-components",
    "covariance_type": "--covariance-type", "iter_per_split": "--iter-per-split",
    "final_iter": "--final-iter", "variance_floor": "--variance-floor",
    "frames_per_component": "--frames-per-component", "relevance_factor": "--relevance-factor",
    "adapt": "--adapt", "top_c": "--top-c", "norm": "--norm", "norm_top_n": "--norm-top-n",
    "jobs": "--jobs",
}

_COMMON_EPILOG = """
exit status: 0 success; 3 finished but skipped some files or speakers, or some trials were
scored on fallback features (VAD off) or given the unscorable score 0.0 (all listed);
2 bad arguments; 1 bad input (missing/malformed data directory, trial list, score or model file).
"""

_TRAIN_EPILOG = """\
examples:
  # a UBM on a data directory (features cached in exp/features/train; size chosen from the data)
  speakergmm train-ubm --data data/train --out exp/ubm.npz

  # 256 diagonal Gaussians, 16 kHz audio, 2 worker processes
  speakergmm train-ubm --data data/train --out exp/ubm.npz -k 256 --sample-rate 16000 -j 2

An interrupted run resumes from its checkpoint OUT.<hash>.ckpt when rerun with the same
arguments (runs with other settings or data keep checkpoints of their own).
""" + _COMMON_EPILOG

_ENROLL_EPILOG = """\
examples:
  # one MAP-adapted model per speaker of data/enroll/utt2spk, means only, r = 16
  speakergmm enroll --data data/enroll --ubm exp/ubm.npz --out exp/speakers.npz

  # adapt means and weights with relevance factor 8
  speakergmm enroll --data data/enroll --ubm exp/ubm.npz --out exp/speakers.npz --adapt mw -r 8

Features are computed with the configuration recorded in the UBM file.
""" + _COMMON_EPILOG

_SCORE_EPILOG = """\
examples:
  # average frame log-likelihood ratio of every trial, top-5 fast scoring
  speakergmm score --data data/test --ubm exp/ubm.npz --models exp/speakers.npz \\
      --trials data/trials --out exp/scores.txt

  # exact scoring, S-norm with an impostor cohort
  speakergmm score --data data/test --ubm exp/ubm.npz --models exp/speakers.npz \\
      --trials data/trials --out exp/scores.txt --exact --norm snorm --cohort-data data/cohort

Trial lines: "speaker-id test-utt-id target|nontarget". Output lines:
"speaker-id test-utt-id score target|nontarget".
""" + _COMMON_EPILOG

_EVALUATE_EPILOG = """\
examples:
  speakergmm evaluate --scores exp/scores.txt --out exp/eval
  speakergmm evaluate --scores scores_without_labels.txt --trials data/trials --out exp/eval

Writes OUT/results.json (eer and min_dcf as fractions, n_target, n_nontarget, minDCF and
actual DCF at the SRE08 and SRE10 operating points, Cllr, closed-set identification
accuracy when every test utterance was scored against every model) and OUT/det.png.
""" + _COMMON_EPILOG

_VERIFY_EPILOG = """\
examples:
  # the whole chain with the defaults (8 or 16 kHz chosen from the audio)
  speakergmm verify --ubm-data data/ubm --enroll-data data/enroll --test-data data/test \\
      --trials data/trials --out exp/verify

  # i-vector / PLDA back end fused with GMM-UBM, T and PLDA trained on data/train's speakers
  speakergmm verify --ubm-data data/ubm --enroll-data data/enroll --test-data data/test \\
      --trials data/trials --out exp/fusion --backend fusion --backend-data data/train

  # the same chain on a Dask cluster (2 local worker processes; or host:port of a scheduler)
  speakergmm verify --ubm-data data/ubm --enroll-data data/enroll --test-data data/test \\
      --trials data/trials --out exp/verify --scheduler local:2

  # the Free Spoken Digit Dataset protocol: see recipes/fsdd_verification/run.py

defaults: 20 MFCC + deltas + delta-deltas, utterance CMVN, energy VAD (8 kHz: 23 mel bands;
16 kHz: 40); UBM of diagonal Gaussians, size from the data (largest power of two with >= 300
training frames per Gaussian, 16..512); MAP of the means with relevance factor 16; top-5 scoring.
Rerunning reuses the feature caches, the UBM (or resumes its checkpoint) and the speaker models.
""" + _COMMON_EPILOG


_DATA_HELP = ("data directory (wav.scp, utt2spk), or features used as they are: a data directory "
              "with feats.scp, a feature cache of `speakergmm features`, or a folder of <utt>.npy")


def _fmt() -> type:
    return argparse.RawDescriptionHelpFormatter


# --------------------------------------------------------------------------- options
def _add_feature_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("features")
    g.add_argument("--sample-rate", type=int, choices=(8000, 16000), default=None,
                   help="analysis rate (default: 16000 when the audio is recorded at 16 kHz or more, else 8000)")
    g.add_argument("--feature-config", metavar="JSON",
                   help="feature configuration file (FeatureConfig.save output or a JSON object of fields)")


def _add_ubm_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("UBM")
    g.add_argument("--n-components", "-k", type=_components, default=None, metavar="K",
                   help="Gaussians in the UBM, or 'auto' (default: largest power of two with >= 300 "
                        "training frames per Gaussian, between 16 and 512)")
    g.add_argument("--covariance-type", choices=("diag", "full"), default="diag",
                   help="covariance of each Gaussian (default: diag)")
    g.add_argument("--iter-per-split", type=_positive_int, default=4,
                   help="EM iterations after each binary split (default: 4)")
    g.add_argument("--final-iter", type=_positive_int, default=16,
                   help="EM iterations at the final size (default: 16)")
    g.add_argument("--variance-floor-ratio", "--variance-floor", dest="variance_floor_ratio",
                   type=float, default=0.001,
                   help="variance floor as a fraction of the global variance (default: 0.001; "
                        "--variance-floor is its former name)")
    g.add_argument("--frames-per-component", type=int, default=0,
                   help="below the final size use only about this many frames per Gaussian "
                        "(speeds up large corpora; e.g. 2000); 0 = all frames (default: 0)")


def _add_enroll_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("MAP enrolment")
    g.add_argument("--relevance-factor", "-r", type=float, default=16.0,
                   help="MAP relevance factor (default: 16)")
    g.add_argument("--adapt", default="m", help="parameters to adapt: m, mw, mv or mwv (default: m)")


def _add_score_options(p: argparse.ArgumentParser) -> None:
    from speakergmm.verification.scoring import NORMALIZATIONS

    g = p.add_argument_group("scoring")
    g.add_argument("--top-c", type=_positive_int, default=5,
                   help="UBM components evaluated per frame (default: 5)")
    g.add_argument("--exact", action="store_true", help="evaluate every component (slower)")
    g.add_argument("--norm", choices=NORMALIZATIONS, default="none",
                   help="score normalisation with an impostor cohort (default: none)")
    g.add_argument("--cohort-data", metavar="DIR",
                   help="data directory of impostor speakers for --norm (speakers also enrolled are left out)")
    g.add_argument("--norm-top-n", type=_positive_int, default=None,
                   help="adaptive normalisation: use only the N highest cohort scores")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", "-j", type=int, default=0, help="worker processes; 0 = all cores (default: 0)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: when stderr is a terminal)")
    p.add_argument("--quiet", "-q", action="store_true", help="no log lines on stderr")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _components(text: str) -> int | None:
    return None if text == "auto" else _positive_int(text)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train-ubm``, ``enroll``, ``score``, ``evaluate`` and ``verify``."""
    p = subparsers.add_parser(
        "train-ubm", help="train a universal background model on a data directory",
        description="Train a GMM universal background model (binary splitting + EM, streaming the "
                    "features of a Kaldi-style data directory; resumable).",
        epilog=_TRAIN_EPILOG, formatter_class=_fmt())
    p.add_argument("--data", required=True, metavar="DIR", help=_DATA_HELP)
    p.add_argument("--out", required=True, metavar="UBM.npz", help="UBM model file to write")
    p.add_argument("--feats", metavar="DIR", help="feature cache (default: features/<data name> next to --out)")
    _add_feature_options(p)
    _add_ubm_options(p)
    _add_run_options(p)
    add_scheduler_option(p)
    p.set_defaults(func=with_cluster("train-ubm", _run_train_ubm))

    p = subparsers.add_parser(
        "enroll", help="MAP-adapt one speaker model per speaker of a data directory",
        description="Enrol every speaker of a data directory's utt2spk by MAP adaptation of the UBM "
                    "(Reynolds 2000); all speakers go into one model file.",
        epilog=_ENROLL_EPILOG, formatter_class=_fmt())
    p.add_argument("--data", required=True, metavar="DIR", help="enrolment " + _DATA_HELP)
    p.add_argument("--ubm", required=True, metavar="UBM.npz", help="UBM from train-ubm")
    p.add_argument("--out", required=True, metavar="SPEAKERS.npz", help="speaker model file to write")
    p.add_argument("--feats", metavar="DIR", help="feature cache (default: features/<data name> next to --out)")
    _add_enroll_options(p)
    _add_run_options(p)
    add_scheduler_option(p)
    p.set_defaults(func=with_cluster("enroll", _run_enroll))

    p = subparsers.add_parser(
        "score", help="score a trial list: log-likelihood ratio of speaker model vs UBM",
        description="Score every trial 'speaker-id test-utt-id target|nontarget' with the average "
                    "per-frame log-likelihood ratio (top-C fast scoring).",
        epilog=_SCORE_EPILOG, formatter_class=_fmt())
    p.add_argument("--data", required=True, metavar="DIR", help="test " + _DATA_HELP)
    p.add_argument("--ubm", required=True, metavar="UBM.npz")
    p.add_argument("--models", required=True, metavar="SPEAKERS.npz")
    p.add_argument("--trials", required=True, metavar="FILE")
    p.add_argument("--out", required=True, metavar="SCORES.txt")
    p.add_argument("--feats", metavar="DIR", help="feature cache (default: features/<data name> next to --out)")
    _add_score_options(p)
    _add_run_options(p)
    add_scheduler_option(p)
    p.set_defaults(func=with_cluster("score", _run_score))

    p = subparsers.add_parser(
        "evaluate", help="EER, minDCF, Cllr and a DET plot of a score file",
        description="Evaluate a score file: EER, minDCF (SRE08/SRE10), actual DCF, Cllr, "
                    "identification accuracy, DET plot.",
        epilog=_EVALUATE_EPILOG, formatter_class=_fmt())
    p.add_argument("--scores", required=True, metavar="FILE",
                   help="lines 'model test-utt score [target|nontarget]'")
    p.add_argument("--trials", metavar="FILE", help="trial list giving the labels (when the score file has none)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (results.json, det.png)")
    p.add_argument("--no-plot", action="store_true", help="skip the DET plot")
    _add_operating_point_options(p)
    p.set_defaults(func=_run_evaluate)

    p = subparsers.add_parser(
        "verify", help="the whole verification chain: features, UBM, enrolment, scoring, evaluation",
        description="Run speaker verification end to end on Kaldi-style data directories: features, "
                    "UBM on --ubm-data, one model per speaker of --enroll-data, scoring of every "
                    "trial, evaluation; GMM-UBM (MAP models) by default, i-vector/PLDA or their "
                    "fusion with --backend. Resumable.",
        epilog=_VERIFY_EPILOG, formatter_class=_fmt())
    p.add_argument("--ubm-data", required=True, metavar="DIR", help="data directory to train the UBM on")
    p.add_argument("--enroll-data", required=True, metavar="DIR",
                   help="enrolment data directory (one model per speaker of its utt2spk)")
    p.add_argument("--test-data", required=True, metavar="DIR", help="test data directory")
    p.add_argument("--trials", required=True, metavar="FILE",
                   help="trial list: 'speaker-id test-utt-id target|nontarget' lines")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    _add_feature_options(p)
    _add_ubm_options(p)
    _add_enroll_options(p)
    _add_score_options(p)
    _add_backend_options(p)
    _add_run_options(p)
    add_scheduler_option(p)
    p.set_defaults(func=with_cluster("verify", _run_verify))


def _add_operating_point_options(p: argparse.ArgumentParser) -> None:
    from speakergmm.metrics import OPERATING_POINTS

    p.add_argument("--preset", choices=sorted(OPERATING_POINTS), type=str.lower,
                   help="report min_dcf / actual DCF at a named operating point "
                        "(sre08: p=0.01, Cmiss=10; sre10: p=0.001; sre16: p=0.01; voxsrc: p=0.05)")
    p.add_argument("--p-target", type=float, help="operating point: prior of a target trial (0..1)")
    p.add_argument("--c-miss", type=float, default=None, help="cost of a miss (default 1)")
    p.add_argument("--c-fa", type=float, default=None, help="cost of a false alarm (default 1)")


def _add_backend_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=("gmm-ubm", "ivector-plda", "fusion"), default="gmm-ubm",
                   help="gmm-ubm (MAP + LLR, default); ivector-plda (T matrix, whitening, length norm, "
                        "PLDA); fusion (mean of the standardised GMM-UBM and i-vector PLDA scores)")
    p.add_argument("--backend-data", metavar="DIR",
                   help="data directory (with utt2spk) for T, LDA, PLDA and the cohort (default: --ubm-data)")
    p.add_argument("--ivector-rank", type=_positive_int, default=150, help="i-vector dimension (default: 150)")
    p.add_argument("--lda-dim", type=int, default=0, help="LDA dimension before PLDA; 0 = no LDA (default)")


def _operating_points(args: argparse.Namespace):
    """The operating points to report, the requested one first (None: the defaults)."""
    from speakergmm import metrics

    custom = any(getattr(args, name, None) is not None for name in ("p_target", "c_miss", "c_fa"))
    if args.preset is None and not custom:
        return None
    if args.preset is not None and custom:
        raise ValueError("give either --preset or --p-target/--c-miss/--c-fa, not both")
    if args.preset is not None:
        name, point = args.preset, metrics.named_operating_point(args.preset)
    else:
        if args.p_target is None:
            raise ValueError("--c-miss/--c-fa need --p-target")
        point = metrics.DCFOperatingPoint(args.p_target, 1.0 if args.c_miss is None else args.c_miss,
                                          1.0 if args.c_fa is None else args.c_fa)
        name = "custom"
    points = {name: point}
    for default in ("sre08", "sre10"):
        points.setdefault(default, metrics.OPERATING_POINTS[default])
    return points


# --------------------------------------------------------------------------- helpers
def _fail(command: str, message: str, status: int = EXIT_INPUT) -> int:
    print(f"speakergmm {command}: {message}", file=sys.stderr)
    return status


def _flag_message(exc: Exception) -> str:
    """A library error with its parameter names replaced by the options that set them."""
    from speakergmm.verification.pipeline import InvalidArgument

    if isinstance(exc, InvalidArgument):
        return f"{_FLAGS.get(exc.argument, exc.argument)} {exc.detail}"
    text = str(exc)
    first = text.split(" ", 1)[0]
    if first in _FLAGS:  # e.g. "top_c must be >= 1; got 0"
        return _FLAGS[first] + text[len(first):]
    return text


def _log(args: argparse.Namespace):
    """The pipeline's log callback: the ``speakergmm`` logger (``-q`` silences it)."""
    from speakergmm.verification.pipeline import logger as pipeline_logger

    return pipeline_logger.info


def settings_from_args(args: argparse.Namespace):
    """VerifySettings from parsed options (absent options keep their defaults)."""
    from speakergmm.verification.pipeline import VerifySettings

    fields = {
        "n_components": "n_components", "covariance_type": "covariance_type",
        "iter_per_split": "iter_per_split", "final_iter": "final_iter",
        "variance_floor_ratio": "variance_floor_ratio", "frames_per_component": "frames_per_component",
        "relevance_factor": "relevance_factor", "adapt": "adapt", "top_c": "top_c",
        "exact": "exact", "norm": "norm", "norm_top_n": "norm_top_n", "jobs": "jobs",
    }
    values = {name: getattr(args, attr) for name, attr in fields.items() if hasattr(args, attr)}
    return VerifySettings(**values)


def _feature_config(args: argparse.Namespace, data_dir: str | None):
    from speakergmm.features import FeatureConfig
    from speakergmm.verification.pipeline import default_feature_config

    if getattr(args, "feature_config", None):
        config = FeatureConfig.load(args.feature_config)
        return config.replace(sample_rate=args.sample_rate) if args.sample_rate else config
    if not args.sample_rate:
        from speakergmm.features.external import feature_dir_kind

        if data_dir is not None and feature_dir_kind(data_dir) is not None:
            return None  # features computed already: used as they are
        feats = getattr(args, "feats", None)
        if feats and (Path(feats) / "config.json").is_file():
            return FeatureConfig.load(Path(feats) / "config.json")  # the given cache's own
    return default_feature_config(data_dir, args.sample_rate, log=_log(args))


def _report_problems(command: str, problems: list[str]) -> int:
    if not problems:
        return EXIT_OK
    print(f"speakergmm {command}: finished, but with {len(problems)} problem(s):", file=sys.stderr)
    for line in problems[:50]:
        print(f"  {line}", file=sys.stderr)
    if len(problems) > 50:
        print(f"  ... and {len(problems) - 50} more", file=sys.stderr)
    return EXIT_PARTIAL


def _default_feats(out: str, data: str) -> Path:
    return Path(out).resolve().parent / "features" / Path(data).resolve().name


def _common_errors() -> tuple[type, ...]:
    from speakergmm.features import FeatureConfigError
    from speakergmm.io import ModelFileError
    from speakergmm.verification import VerificationError

    return (VerificationError, ModelFileError, FeatureConfigError, OSError)


# --------------------------------------------------------------------------- handlers
def _run_train_ubm(args: argparse.Namespace) -> int:
    from speakergmm.verification.pipeline import prepare_features, run_train_ubm

    cmd = "train-ubm"
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        return _fail(cmd, _flag_message(exc), EXIT_USAGE)
    log = _log(args)
    try:
        config = _feature_config(args, args.data)
        stage = prepare_features(args.data, args.feats or _default_feats(args.out, args.data), config,
                                 jobs=settings.jobs, log=log, show_progress=args.progress,
                                 beside=args.feats is None, client=args.client)
        data, store = stage.value
        ubm = run_train_ubm(store, data.utterances, args.out, settings, log=log,
                            show_progress=args.progress, client=args.client)
    except _common_errors() as exc:
        return _fail(cmd, _flag_message(exc))
    log(f"train-ubm: {ubm.value.n_components} Gaussians -> {args.out}")
    return _report_problems(cmd, stage.problems)


def _run_enroll(args: argparse.Namespace) -> int:
    from speakergmm.verification.pipeline import prepare_features, run_enroll, ubm_feature_config
    from speakergmm.verification.ubm import load_ubm

    cmd = "enroll"
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        return _fail(cmd, _flag_message(exc), EXIT_USAGE)
    log = _log(args)
    try:
        ubm, meta = load_ubm(args.ubm)
        config = ubm_feature_config(meta, args.ubm)  # None: trained on features computed elsewhere
        stage = prepare_features(args.data, args.feats or _default_feats(args.out, args.data), config,
                                 jobs=settings.jobs, log=log, show_progress=args.progress,
                                 beside=args.feats is None, client=args.client)
        data, store = stage.value
        enrolled = run_enroll(ubm, store, data.spk2utt, args.out, settings, log=log,
                              ubm_feature_config=config, client=args.client)
    except _common_errors() as exc:
        return _fail(cmd, _flag_message(exc))
    return _report_problems(cmd, stage.problems + enrolled.problems)


def _run_score(args: argparse.Namespace) -> int:
    from speakergmm.corpus import CorpusError, read_data_dir, read_trials
    from speakergmm.verification import SpeakerModels
    from speakergmm.verification.pipeline import (InvalidArgument, check_cohort, prepare_features, run_score,
                                                  ubm_feature_config, write_scores)
    from speakergmm.verification.ubm import load_ubm

    cmd = "score"
    try:
        settings = settings_from_args(args)
        check_cohort(settings, args.cohort_data)
    except ValueError as exc:  # InvalidArgument included
        return _fail(cmd, _flag_message(exc), EXIT_USAGE)
    log = _log(args)
    try:
        ubm, meta = load_ubm(args.ubm)
        models = SpeakerModels.load(args.models)
        models.check_ubm(ubm, what=f"the speaker models in {args.models}")
        config = ubm_feature_config(meta, args.ubm)  # None: trained on features computed elsewhere
        if not Path(args.data).is_dir():
            raise InvalidArgument("data_dir", f"{args.data}: no such directory")
        from speakergmm.features.external import feature_dir_kind

        # The trial list is checked before any feature is computed (a folder of features
        # elsewhere is checked once read, below).
        known_test = None if feature_dir_kind(args.data) in ("cache", "npy") else read_data_dir(args.data)
        try:
            trials = read_trials(args.trials, enroll=models.speaker_ids, test=known_test)
        except CorpusError as exc:
            return _fail(cmd, str(exc))
        stage = prepare_features(args.data, args.feats or _default_feats(args.out, args.data), config,
                                 jobs=settings.jobs, log=log, show_progress=args.progress,
                                 beside=args.feats is None, client=args.client)
        data, store = stage.value
        if known_test is None:
            unknown = [t.test for t in trials if t.test not in data][:5]
            if unknown:
                return _fail(cmd, f"{args.trials}: test utterance(s) {', '.join(unknown)} are not in {args.data}")
        cohort = None
        problems = list(stage.problems)
        if args.cohort_data:
            try:
                cstage = prepare_features(args.cohort_data, _default_feats(args.out, args.cohort_data), config,
                                          jobs=settings.jobs, log=log, show_progress=args.progress,
                                          client=args.client)
            except InvalidArgument as exc:
                raise InvalidArgument("cohort_data", exc.detail) from exc
            cohort = (cstage.value[1], cstage.value[0].spk2utt)
            problems += cstage.problems
        scored = run_score(ubm, models, store, trials, settings, cohort=cohort, log=log,
                           show_progress=args.progress, audio=data.wav, client=args.client)
        write_scores(args.out, trials, scored.value)
    except _common_errors() as exc:
        return _fail(cmd, _flag_message(exc))
    log(f"score: wrote {args.out}")
    return _report_problems(cmd, problems + scored.problems)


def _run_evaluate(args: argparse.Namespace) -> int:
    from speakergmm.verification.pipeline import evaluate_trials, read_scores

    cmd = "evaluate"
    try:
        points = _operating_points(args)
    except ValueError as exc:
        return _fail(cmd, str(exc), EXIT_USAGE)
    try:
        trials, scores = read_scores(args.scores, args.trials)
        results = evaluate_trials(trials, scores, args.out, plot=not args.no_plot,
                                  extra={"scores": str(args.scores)}, operating_points=points)
    except _common_errors() as exc:
        return _fail(cmd, _flag_message(exc))
    _print_results(results, Path(args.out))
    return EXIT_OK


def _print_results(results: dict[str, Any], out: Path) -> None:
    lines = [f"EER            {100 * results['eer']:.2f} %"
             + (f" (Kaldi compute-eer: {100 * results['eer_kaldi']:.2f} %)" if "eer_kaldi" in results else "")]
    if results.get("min_dcf_operating_point") not in (None, "sre08"):
        name = results["min_dcf_operating_point"]
        lines.append(f"minDCF ({name}) {results['min_dcf']:.4f}, actual DCF {results[f'actual_dcf_{name}']:.4f}")
    lines += [
             f"minDCF (SRE08) {results['min_dcf_sre08']:.4f}" if "min_dcf_sre08" in results
             else f"minDCF         {results['min_dcf']:.4f}"]
    if "min_dcf_sre10" in results:
        lines.append(f"minDCF (SRE10) {results['min_dcf_sre10']:.4f}")
    lines.append(f"Cllr           {results['cllr']:.4f} bits (min {results['min_cllr']:.4f})")
    if results.get("identification_accuracy") is not None:
        lines.append(f"identification {100 * results['identification_accuracy']:.2f} % "
                     f"of {results['n_identification_tests']} test utterances")
    lines.append(f"trials         {results['n_target']} target, {results['n_nontarget']} non-target"
                 + (f", {len(results['fallback_utterances'])} test utterance(s) on fallback features"
                    if results.get("fallback_utterances") else "")
                 + (f", {len(results['unscorable_trials'])} unscorable (score {results['unscorable_score']})"
                    if results.get("unscorable_trials") else ""))
    lines.append(f"results        {out / 'results.json'}")
    if results.get("det_plot"):
        lines.append(f"DET plot       {results['det_plot']}")
    print("\n".join(lines))


def _run_verify(args: argparse.Namespace) -> int:
    from speakergmm.verification.pipeline import check_cohort, verify

    cmd = "verify"
    try:
        settings = settings_from_args(args)
        if getattr(args, "backend", "gmm-ubm") == "gmm-ubm":  # the i-vector chain's cohort is its backend data
            check_cohort(settings, args.cohort_data)
    except ValueError as exc:  # InvalidArgument included
        return _fail(cmd, _flag_message(exc), EXIT_USAGE)
    if getattr(args, "backend_data", None) and not Path(args.backend_data).is_dir():
        return _fail(cmd, f"--backend-data {args.backend_data}: no such directory")
    try:
        config = _feature_config(args, args.ubm_data) if Path(args.ubm_data).is_dir() else None
        if getattr(args, "backend", "gmm-ubm") != "gmm-ubm":
            from speakergmm.verification.ivector_chain import IvectorSettings, verify_ivector

            results = verify_ivector(args.ubm_data, args.enroll_data, args.test_data, args.trials, args.out,
                                     settings=settings, backend_data=args.backend_data, feature_config=config,
                                     ivector_settings=IvectorSettings(rank=args.ivector_rank, lda_dim=args.lda_dim),
                                     backend=args.backend, log=_log(args), show_progress=args.progress,
                                     client=args.client)
        else:
            results = verify(args.ubm_data, args.enroll_data, args.test_data, args.trials, args.out,
                             settings=settings, feature_config=config, cohort_data=args.cohort_data,
                             log=_log(args), show_progress=args.progress, client=args.client)
    except _common_errors() as exc:
        return _fail(cmd, _flag_message(exc))
    _print_results(results, Path(args.out))
    return _report_problems(cmd, results.get("problems", []))
