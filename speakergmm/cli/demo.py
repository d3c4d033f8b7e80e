"""``speakergmm demo``: GMM-UBM speaker verification end to end on real or synthetic voices.

By default it runs on the real speech shipped in the repository's ``data/fsdd`` (a subset of
the Free Spoken Digit Dataset laid out as Kaldi data directories, found from the current
directory or next to the package): the whole ``verify`` chain into ``OUT/exp``, printing
EER, minDCF and the path of the DET plot. ``--synthetic`` generates a corpus of synthetic
voices into ``OUT/corpus`` instead (no data needed at all). A rerun reuses everything.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

_EPILOG = """\
examples:
  speakergmm demo --out demo                        # real voices of data/fsdd (about 10 s)
  speakergmm demo --out demo --data path/to/fsdd    # the shipped folder from elsewhere
  speakergmm demo --out demo --synthetic            # generated voices, no data needed
  speakergmm demo --out demo --synthetic --speakers 20 -j 1

The real voices are 600 recordings of six speakers saying digits (FSDD, CC BY-SA 4.0):
train/ (50 utterances a speaker) trains the UBM and the speaker models, test/ (50 a
speaker) gives 1800 trials. The synthetic voices (source-filter synthesis with per-speaker
pitch, formants and glottal shape) are not recordings of people: figures on them show the
chain works, not how well it does on real speech.

exit status: 0 success; 1 the output directory is unusable; 2 bad arguments;
3 finished but some files or trials were skipped.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    p = subparsers.add_parser(
        "demo", help="verification end to end on the shipped real voices (data/fsdd) or synthetic ones",
        description="Run the GMM-UBM verification chain into OUT/exp on the real speech shipped in "
                    "data/fsdd (or, with --synthetic, on a generated synthetic-voice corpus in "
                    "OUT/corpus); print EER/minDCF and the DET plot's path.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="speakergmm-demo", metavar="DIR",
                   help="output directory (default: ./speakergmm-demo)")
    p.add_argument("--data", metavar="DIR", default=None,
                   help="the shipped real corpus (train/, test/, trials); default: data/fsdd under the "
                        "current directory or the repository holding the package, or $SPEAKERGMM_DEMO_DATA")
    p.add_argument("--synthetic", action="store_true",
                   help="synthetic voices generated into OUT/corpus instead of the real ones")
    g = p.add_argument_group("synthetic corpus (with --synthetic)")
    g.add_argument("--speakers", type=int, default=10, help="enrolled speakers (default: 10)")
    g.add_argument("--ubm-speakers", type=int, default=8, help="background speakers for the UBM (default: 8)")
    g.add_argument("--test-utterances", type=int, default=12,
                   help="test utterances per enrolled speaker (default: 12)")
    p.add_argument("--n-components", "-k", type=int, default=None,
                   help="UBM size (default: chosen from the data; 64 for the default corpus)")
    g.add_argument("--seed", type=int, default=0, help="corpus seed (default: 0)")
    p.add_argument("--jobs", "-j", type=int, default=0, help="worker processes; 0 = all cores (default: 0)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: when stderr is a terminal)")
    p.add_argument("--quiet", "-q", action="store_true", help="only the results")
    p.set_defaults(func=_run_demo)


def find_demo_data(given: str | None = None) -> Path | None:
    """The shipped real corpus: ``given``, ``$SPEAKERGMM_DEMO_DATA``, ``./data/fsdd``, or
    ``data/fsdd`` in the repository that holds the package (an editable install); None if absent."""
    candidates = [given] if given else [
        os.environ.get("SPEAKERGMM_DEMO_DATA"),
        Path.cwd() / "data" / "fsdd",
        Path(__file__).resolve().parents[2] / "data" / "fsdd",
    ]
    for candidate in candidates:
        if candidate and all((Path(candidate) / part).exists() for part in ("train", "test", "trials")):
            return Path(candidate).resolve()
    return None


def _run_real_demo(args: argparse.Namespace) -> int:
    from speakergmm.cli.verification import _print_results, _report_problems
    from speakergmm.exit_codes import EXIT_INPUT
    from speakergmm.io import ModelFileError
    from speakergmm.verification import VerificationError
    from speakergmm.verification.pipeline import VerifySettings, verify

    data = find_demo_data(args.data)
    if data is None:
        where = args.data or "data/fsdd (in the current directory or the repository)"
        print(f"speakergmm demo: the shipped real corpus was not found at {where}; run from the "
              "repository root, give --data DIR (a folder with train/, test/ and trials), or use "
              "--synthetic", file=sys.stderr)
        return EXIT_INPUT
    out = Path(args.out)
    from speakergmm.verification.pipeline import logger as pipeline_logger

    log = None if args.quiet else pipeline_logger.info
    started = time.perf_counter()
    if log:
        log(f"demo: real voices from {data} (Free Spoken Digit Dataset subset, CC BY-SA 4.0)")
    try:
        results = verify(data / "train", data / "train", data / "test", data / "trials", out / "exp",
                         settings=VerifySettings(n_components=args.n_components, jobs=args.jobs), log=log,
                         show_progress=args.progress, title="GMM-UBM on FSDD voices (shipped subset)",
                         extra={"corpus": "Free Spoken Digit Dataset subset (data/fsdd, CC BY-SA 4.0)",
                                "corpus_dir": str(data)})
    except (ValueError, OSError) as exc:
        kind = "bad input" if isinstance(exc, (VerificationError, ModelFileError)) else "cannot run"
        print(f"speakergmm demo: {kind}: {exc}", file=sys.stderr)
        return EXIT_INPUT
    print("GMM-UBM speaker verification on real voices (FSDD subset: 6 speakers, 1800 trials)")
    _print_results(results, out / "exp")
    print(f"time           {time.perf_counter() - started:.1f} s")
    return _report_problems("demo", results.get("problems", []))


def _run_demo(args: argparse.Namespace) -> int:
    if not args.synthetic:
        if args.n_components is not None and args.n_components < 1:
            print("speakergmm demo: --n-components must be at least 1", file=sys.stderr)
            return 2
        return _run_real_demo(args)
    return _run_synthetic_demo(args)


def _run_synthetic_demo(args: argparse.Namespace) -> int:
    from speakergmm.cli.verification import _print_results, _report_problems
    from speakergmm.exit_codes import EXIT_INPUT, EXIT_USAGE
    from speakergmm.datasets.synthetic import make_synthetic_corpus
    from speakergmm.io import ModelFileError
    from speakergmm.verification import VerificationError
    from speakergmm.verification.pipeline import VerifySettings, verify

    if args.speakers < 2 or args.ubm_speakers < 1 or args.test_utterances < 1:
        print("speakergmm demo: --speakers must be at least 2, --ubm-speakers and --test-utterances "
              "at least 1", file=sys.stderr)
        return EXIT_USAGE
    if args.n_components is not None and args.n_components < 1:
        print("speakergmm demo: --n-components must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    out = Path(args.out)
    from speakergmm.verification.pipeline import logger as pipeline_logger

    log = None if args.quiet else pipeline_logger.info
    started = time.perf_counter()
    print("speakergmm demo: SYNTHETIC voices (source-filter synthesis, not recordings of real "
          "speakers); the figures show the chain works, not real-world accuracy.", file=sys.stderr)
    try:
        corpus_dir = out / "corpus"
        had_corpus = (corpus_dir / "COMPLETE.json").is_file()
        t0 = time.perf_counter()
        corpus = make_synthetic_corpus(corpus_dir, n_speakers=args.speakers, n_ubm_speakers=args.ubm_speakers,
                                       test_utterances_per_speaker=args.test_utterances, seed=args.seed)
        if log:
            log(f"demo: {'reusing' if had_corpus else 'generated'} the synthetic corpus in "
                f"{corpus.root} ({time.perf_counter() - t0:.1f} s)")
        results = verify(corpus.ubm, corpus.enroll, corpus.test, corpus.trials, out / "exp",
                         settings=VerifySettings(n_components=args.n_components, jobs=args.jobs), log=log, show_progress=args.progress,
                         title="GMM-UBM on synthetic voices",
                         extra={"corpus": "synthetic voices (speakergmm.datasets.synthetic)",
                                "corpus_dir": str(corpus.root)})
    except FileExistsError as exc:
        print(f"speakergmm demo: {exc.args[0].split(';')[0]}; choose another --out, or delete "
              f"{out / 'corpus'} to generate it again", file=sys.stderr)
        return EXIT_INPUT
    except (ValueError, OSError) as exc:
        kind = "bad input" if isinstance(exc, (VerificationError, ModelFileError)) else "cannot run"
        print(f"speakergmm demo: {kind}: {exc}", file=sys.stderr)
        return EXIT_INPUT
    print("GMM-UBM speaker verification on synthetic voices")
    _print_results(results, out / "exp")
    print(f"time           {time.perf_counter() - started:.1f} s")
    return _report_problems("demo", results.get("problems", []))
