"""``speakergmm demo``: GMM-UBM speaker verification end to end on synthetic voices.

Generates a small synthetic corpus (source-filter synthetic voices: UBM speakers, enrolled
speakers and their test utterances, a trial list) into ``OUT/corpus`` unless it is already
there, runs the whole ``verify`` chain on it into ``OUT/exp`` and prints EER, minDCF and the
path of the DET plot. About 15 s on two cores; a rerun reuses everything.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

_EPILOG = """\
examples:
  speakergmm demo --out demo            # generate + run (about a minute), prints EER/minDCF
  speakergmm demo --out demo -j 1       # one core
  speakergmm demo --out demo --speakers 20

The voices are synthetic (source-filter synthesis with per-speaker pitch, formants and
glottal shape), not recordings of people: figures on them show the chain works, not how
well it does on real speech; for that run recipes/fsdd_verification/run.py.

exit status: 0 success; 1 the output directory is unusable; 2 bad arguments;
3 finished but some files or trials were skipped.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    p = subparsers.add_parser(
        "demo", help="verification end to end on a generated synthetic-voice corpus (about 15 s)",
        description="Generate a synthetic-voice corpus into OUT/corpus (if absent), run the GMM-UBM "
                    "verification chain on it into OUT/exp, print EER/minDCF and the DET plot's path.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="speakergmm-demo", metavar="DIR",
                   help="output directory (default: ./speakergmm-demo)")
    p.add_argument("--speakers", type=int, default=10, help="enrolled speakers (default: 10)")
    p.add_argument("--ubm-speakers", type=int, default=8, help="background speakers for the UBM (default: 8)")
    p.add_argument("--test-utterances", type=int, default=12,
                   help="test utterances per enrolled speaker (default: 12)")
    p.add_argument("--n-components", "-k", type=int, default=None,
                   help="UBM size (default: chosen from the data; 64 for the default corpus)")
    p.add_argument("--seed", type=int, default=0, help="corpus seed (default: 0)")
    p.add_argument("--jobs", "-j", type=int, default=0, help="worker processes; 0 = all cores (default: 0)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: when stderr is a terminal)")
    p.add_argument("--quiet", "-q", action="store_true", help="only the results")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
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
