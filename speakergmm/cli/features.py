"""``speakergmm features``, ``make-data-dir`` and ``validate-data-dir``: the front end on the command line.

Exit status of ``features``: 0 when every utterance has features; 3 when the batch finished
but skipped some utterances (listed on stderr and in OUT_DIR/report.json); 2 for bad
arguments or configuration; 1 when the data directory is malformed or OUT_DIR unusable.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Mapping

from speakergmm.cli.scale import add_scheduler_option, with_cluster
from speakergmm.exit_codes import EXIT_INPUT as EXIT_INVALID_INPUT
from speakergmm.exit_codes import EXIT_OK, EXIT_USAGE
from speakergmm.exit_codes import EXIT_PARTIAL as EXIT_SKIPPED

logger = logging.getLogger(__name__)

_FEATURES_EPILOG = """\
examples:
  # Kaldi-like MFCC + deltas + utterance CMVN + energy VAD at 8 kHz, two workers
  speakergmm features data/train feats/train --jobs 2

  # 16 kHz audio, 13 cepstra with log energy, sliding CMN over 3 s, no VAD
  speakergmm features data/train feats/train --sample-rate 16000 --n-mfcc 13 \\
      --energy log_energy --cmvn sliding --no-cmvn-variance --no-vad

  # start from a saved configuration (e.g. the one next to a model), override one field
  speakergmm features data/test feats/test --config exp/ubm/features.json --jobs 2

  # Kaldi's compute-mfcc-feats (default options, dither 0), written as feats.ark + feats.scp
  speakergmm features data/train mfcc/train --preset kaldi --sample-rate 16000 --format kaldi

A cache made with another configuration is never overwritten: the run is refused, naming
the settings that differ.

Rerunning reuses the features of every utterance whose audio and configuration are
unchanged (an interrupted run resumes); --force recomputes all.

exit status: 0 all extracted; 3 some utterances skipped (missing, unreadable, empty,
silent or too short audio, no speech after VAD; see OUT_DIR/report.json);
2 bad arguments or configuration; 1 malformed data directory or unusable OUT_DIR.
"""

_MAKE_EPILOG = """\
examples:
  # the Free Spoken Digit Dataset: utterance ids <speaker>-<file stem>, utt2digit, utt2index
  speakergmm make-data-dir ../shared/data/fsdd/recordings data/fsdd

  # only the training part of each speaker (index 5..49)
  speakergmm make-data-dir ../shared/data/fsdd/recordings data/train --include index=5-49

  # another naming scheme, recursive
  speakergmm make-data-dir corpus/ data/all --pattern "{speaker}/{session}_{index}.flac" --recursive
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``features`` and ``make-data-dir`` subcommands."""
    from speakergmm.features.config import CMVN_MODES, ENERGY_MODES, WINDOWS

    p = subparsers.add_parser(
        "features", help="extract MFCC features of a data directory into a feature cache",
        description="Extract MFCC features (deltas, CMVN, energy VAD) for every utterance of a "
                    "Kaldi-style data directory (wav.scp with paths or commands ending in '|', "
                    "optional segments; utt2spk) into OUT_DIR: a feature cache (feats/*.npy shards "
                    "holding the frames of consecutive utterances, config.json, index.json mapping "
                    "utterance -> shard and rows, report.json, utt2spk) or, with --format kaldi, "
                    "feats.ark + feats.scp. Two runs on one OUT_DIR take turns (the second waits "
                    "for the first).",
        epilog=_FEATURES_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir", metavar="DATA_DIR", help="Kaldi-style data directory")
    p.add_argument("out_dir", metavar="OUT_DIR", help="feature cache directory (created or updated)")
    g = p.add_argument_group("configuration (defaults: speakergmm.features.FeatureConfig)")
    g.add_argument("--config", metavar="JSON", help="start from this configuration file "
                   "(FeatureConfig.save output or a JSON object of fields); options below override it")
    g.add_argument("--preset", choices=("default", "kaldi"), default=None,
                   help="start from a preset: default (FeatureConfig()) or kaldi (FeatureConfig.kaldi(): "
                        "equal to Kaldi's compute-mfcc-feats defaults, dither 0: 13 MFCC with log "
                        "energy, 23 mel bands, no deltas, CMVN or VAD; at the audio's own rate unless "
                        "--sample-rate); options below override it")
    g.add_argument("--sample-rate", type=int, help="analysis rate in Hz; other rates are resampled (8000)")
    g.add_argument("--n-mfcc", type=int, help="cepstral coefficients (20)")
    g.add_argument("--n-mels", type=int, help="mel bands (23 up to 8 kHz, 40 above)")
    g.add_argument("--energy", choices=ENERGY_MODES, help="first coefficient: c0, log_energy or none (c0)")
    g.add_argument("--window", choices=WINDOWS, help="analysis window (povey)")
    g.add_argument("--frame-length-ms", type=float, help="window length in ms (25)")
    g.add_argument("--frame-shift-ms", type=float, help="hop in ms (10)")
    g.add_argument("--preemphasis", type=float, help="pre-emphasis coefficient (0.97)")
    g.add_argument("--lifter", type=float, help="cepstral liftering coefficient, 0 disables (22)")
    g.add_argument("--fmin", type=float, help="lowest filterbank frequency in Hz (20)")
    g.add_argument("--fmax", type=float, help="highest filterbank frequency in Hz; <= 0 is an offset "
                   "from Nyquist (Nyquist)")
    g.add_argument("--dither", type=float, help="dither in 16-bit sample units, seeded per file (0)")
    g.add_argument("--deltas", type=int, choices=(0, 1, 2, 3), dest="delta_order",
                   help="0 statics only, 1 + deltas, 2 + delta-deltas (2)")
    g.add_argument("--no-deltas", action="store_const", const=0, dest="delta_order",
                   help="statics only (same as --deltas 0)")
    g.add_argument("--cmvn", choices=CMVN_MODES, help="normalisation: utterance, sliding, warp or none (utterance)")
    g.add_argument("--cmvn-window", type=int, help="window of sliding CMVN and warping, in frames (300)")
    g.add_argument("--cmvn-variance", action=argparse.BooleanOptionalAction, default=None,
                   help="normalise variances too (yes)")
    g.add_argument("--vad", action=argparse.BooleanOptionalAction, default=None,
                   help="drop non-speech frames with the energy VAD (yes)")
    g.add_argument("--vad-threshold", type=float, help="VAD log-energy offset (5.5)")
    g.add_argument("--vad-mean-scale", type=float, help="VAD weight of the mean log energy (0.5)")
    p.add_argument("--format", choices=("cache", "kaldi"), default="cache",
                   help="cache: our feature cache (default); kaldi: OUT_DIR/feats.ark + feats.scp "
                        "(kaldiio) with utt2spk, spk2utt, utt2num_frames and config.json, a Kaldi data "
                        "directory every command reads as it is")
    p.add_argument("--jobs", "-j", type=int, default=0,
                   help="worker processes; 0 = all cores (default: 0)")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no summary lines on stderr (problems are still reported)")
    p.add_argument("--force", action="store_true", help="recompute even the features that are current")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: when stderr is a terminal)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resulting configuration as JSON and exit")
    add_scheduler_option(p)
    p.set_defaults(func=with_cluster("features", _run_features))

    m = subparsers.add_parser(
        "make-data-dir", help="build a Kaldi-style data directory from a folder of audio files",
        description="Write wav.scp, utt2spk, spk2utt and utt2<field> files for the audio files of "
                    "FOLDER whose names match --pattern; utterance ids are <speaker>-<file stem>.",
        epilog=_MAKE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    m.add_argument("folder", metavar="FOLDER", help="folder holding the audio files")
    m.add_argument("out_dir", metavar="OUT_DIR", help="data directory to write")
    m.add_argument("--pattern", default="{digit}_{speaker}_{index}.wav",
                   help="file name pattern with {field} placeholders (default: %(default)s, FSDD's)")
    m.add_argument("--speaker-field", default="speaker", help="field naming the speaker (default: speaker)")
    m.add_argument("--include", action="append", default=[], metavar="FIELD=VALUES",
                   help="keep files whose FIELD is one of VALUES: comma-separated values or "
                        "integer ranges LO-HI, e.g. index=5-49 or speaker=george,theo; repeatable (all must hold)")
    m.add_argument("--recursive", action="store_true", help="look in sub-folders too")
    m.set_defaults(func=_run_make_data_dir)

    v = subparsers.add_parser(
        "validate-data-dir", help="check a Kaldi data directory as Kaldi's validate_data_dir.sh does",
        description="Check wav.scp, segments, utt2spk, spk2utt, feats.scp, spk2gender and utt2* files: "
                    "format, unique and sorted ids (LC_ALL=C order), consistency between the files, "
                    "segments that cannot be cut. Each problem is printed as file:line: what. "
                    "Audio is not opened and commands are not run (speakergmm features does that).",
        epilog="exit status: 0 valid; 1 problems found (listed on stdout).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("data_dir", metavar="DATA_DIR", help="Kaldi-style data directory")
    v.set_defaults(func=_run_validate)


# ---------------------------------------------------------------------- features
_FIELD_OPTIONS = ("sample_rate", "n_mfcc", "n_mels", "energy", "window", "frame_length_ms",
                  "frame_shift_ms", "preemphasis", "lifter", "fmin", "fmax", "dither", "delta_order",
                  "cmvn", "cmvn_window", "cmvn_variance", "vad", "vad_threshold", "vad_mean_scale")


def build_config(args: argparse.Namespace):
    """The FeatureConfig of parsed ``features`` arguments (``--config`` then the options)."""
    from speakergmm.features.config import FeatureConfig, FeatureConfigError

    if args.config and getattr(args, "preset", None):
        raise FeatureConfigError("give --config or --preset, not both")
    if args.config:
        base = FeatureConfig.load(args.config)
    elif getattr(args, "preset", None) == "kaldi":
        base = FeatureConfig.kaldi(sample_rate=args.sample_rate or _audio_rate(args.data_dir) or 16000)
    else:
        base = FeatureConfig()
    changes: dict[str, Any] = {name: getattr(args, name) for name in _FIELD_OPTIONS
                               if getattr(args, name, None) is not None}
    return base.replace(**changes) if changes else base


def _audio_rate(data_dir: str) -> int | None:
    """The rate of the first readable audio of a data directory (None when none is)."""
    from speakergmm.corpus import CorpusError, read_data_dir
    from speakergmm.features.audio import FeatureError, probe_sample_rate

    try:
        data = read_data_dir(data_dir)
    except CorpusError:
        return None
    for location in list(dict.fromkeys(data.wav.values()))[:3]:
        try:
            return probe_sample_rate(location)
        except FeatureError:
            continue
    return None


def _run_features(args: argparse.Namespace) -> int:
    from speakergmm.corpus import CorpusError
    from speakergmm.features.config import FeatureConfigError
    from speakergmm.features.store import FeatureStoreError, extract_data_dir

    try:
        config = build_config(args)
    except FeatureConfigError as exc:
        print(f"speakergmm features: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2, sort_keys=True))
        return EXIT_OK
    cache_dir = args.out_dir
    if args.format == "kaldi":
        from pathlib import Path

        cache_dir = str(Path(args.out_dir) / ".speakergmm-cache")  # resumable work area
    logger.info(f"features: configuration {config.hash()} ({config.sample_rate} Hz analysis, "
                f"{config.n_mfcc} MFCC, deltas {config.delta_order}, CMVN {config.cmvn}, "
                f"VAD {'on' if config.vad else 'off'}; --print-config shows all fields)")
    try:
        report = extract_data_dir(args.data_dir, cache_dir, config, jobs=args.jobs,
                                  show_progress=args.progress, force=args.force, client=args.client)
        if args.format == "kaldi":
            from speakergmm.corpus import read_data_dir
            from speakergmm.features.external import write_kaldi_features
            from speakergmm.features.store import FeatureStore

            out = write_kaldi_features(FeatureStore(cache_dir), args.out_dir,
                                       read_data_dir(args.data_dir), config)
            logger.info(f"wrote {out / 'feats.ark'} and {out / 'feats.scp'} ({report.n_ok} utterances)")
    except CorpusError as exc:
        print(f"speakergmm features: invalid data directory {args.data_dir}:\n  {exc}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    except (FeatureStoreError, OSError) as exc:
        print(f"speakergmm features: cannot write the feature cache: {exc}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    summary = report.summary().splitlines()
    logger.info(summary[0])
    for line in summary[1:]:
        logger.warning(line)
    if report.skipped:
        logger.warning(f"speakergmm features: {len(report.skipped)} of {report.n_utterances} utterance(s) "
                       f"skipped (see {report.out_dir / 'report.json'}); exit status {EXIT_SKIPPED}")
    return report.exit_status


# ---------------------------------------------------------------------- validate-data-dir
def _run_validate(args: argparse.Namespace) -> int:
    from speakergmm.corpus import read_data_dir, validate_data_dir

    problems = validate_data_dir(args.data_dir)
    if problems:
        print("\n".join(problems))
        print(f"speakergmm validate-data-dir: {len(problems)} problem(s) in {args.data_dir}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    data = read_data_dir(args.data_dir)
    parts = [f"{len(data)} utterances of {len(data.speakers)} speakers"]
    if data.segments:
        parts.append(f"segments of {len(data.recordings)} recordings")
    if any(loc.rstrip().endswith("|") for loc in data.wav.values()):
        parts.append(f"{sum(loc.rstrip().endswith('|') for loc in data.wav.values())} audio commands")
    if data.feats:
        parts.append("feats.scp")
    print(f"{args.data_dir}: valid ({', '.join(parts)})", file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------------- make-data-dir
class IncludeFilter:
    """``select(fields)`` predicate of ``--include FIELD=VALUES`` options (all must hold).

    VALUES are comma-separated exact values or inclusive integer ranges ``LO-HI``.
    """

    def __init__(self, specs: list[str]):
        self.rules: list[tuple[str, set[str], list[tuple[int, int]]]] = []
        for spec in specs:
            name, sep, values = spec.partition("=")
            name = name.strip()
            if not sep or not name or not values.strip():
                raise ValueError(f"--include {spec!r}: expected FIELD=VALUES, e.g. index=5-49")
            exact: set[str] = set()
            ranges: list[tuple[int, int]] = []
            for item in (v.strip() for v in values.split(",")):
                if not item:
                    continue
                lo, dash, hi = item.partition("-")
                if dash and lo.strip().isdigit() and hi.strip().isdigit():
                    if int(lo) > int(hi):
                        raise ValueError(f"--include {spec!r}: empty range {item!r}")
                    ranges.append((int(lo), int(hi)))
                else:
                    exact.add(item)
            self.rules.append((name, exact, ranges))

    @property
    def fields(self) -> list[str]:
        """The field names the filter looks at."""
        return [name for name, _, _ in self.rules]

    def __call__(self, fields: Mapping[str, str]) -> bool:
        for name, exact, ranges in self.rules:
            value = fields.get(name)
            if value is None:
                return False
            if value in exact:
                continue
            if value.lstrip("-").isdigit() and any(lo <= int(value) <= hi for lo, hi in ranges):
                continue
            return False
        return True


def _run_make_data_dir(args: argparse.Namespace) -> int:
    from speakergmm.corpus import CorpusError, make_data_dir, parse_filename_pattern

    try:
        select = IncludeFilter(args.include) if args.include else None
        _, names = parse_filename_pattern(args.pattern)
        if select is not None:
            unknown = [f for f in select.fields if f not in names]
            if unknown:
                raise ValueError(f"--include names field(s) {', '.join(unknown)} that the pattern "
                                 f"{args.pattern!r} does not have ({', '.join(names)})")
    except ValueError as exc:
        print(f"speakergmm make-data-dir: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = make_data_dir(args.folder, args.out_dir, pattern=args.pattern,
                               speaker_field=args.speaker_field, select=select,
                               recursive=args.recursive)
    except CorpusError as exc:
        print(f"speakergmm make-data-dir: {exc}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    except OSError as exc:
        print(f"speakergmm make-data-dir: cannot write {args.out_dir}: {exc}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    data = result.data
    print(f"wrote {result.out_dir}: {len(data)} utterances of {len(data.speakers)} speakers"
          + (f"; fields {', '.join(sorted(data.fields))}" if data.fields else "")
          + (f"; {result.not_selected} file(s) left out by --include" if result.not_selected else ""),
          file=sys.stderr)
    if result.unmatched:
        shown = ", ".join(result.unmatched[:5]) + (" ..." if len(result.unmatched) > 5 else "")
        print(f"ignored {len(result.unmatched)} file(s) not matching {args.pattern!r}: {shown}", file=sys.stderr)
    return EXIT_OK
