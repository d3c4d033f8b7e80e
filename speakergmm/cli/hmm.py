"""``speakergmm hmm train|decode|align``: word HMMs on Kaldi-style data directories.

HTK's HRest / HVite in one tool. A data directory (``wav.scp``, ``utt2spk``) with a ``text``
file (``utt-id word``, one word per utterance for word models) is turned into features
(resumable cache), then:

- ``train``: one left-to-right GMM-HMM per word of ``text`` (a :class:`WordRecognizer`),
  saved as a plain model file with the front end's configuration;
- ``decode``: the most likely word of every utterance; writes ``results.txt``
  (``utt hypothesis reference``), ``results.json`` (accuracy, WER by alignment, confusion
  matrix) and ``confusion.png``;
- ``align``: forced (Viterbi) alignment of each utterance to the HMM of its word; writes
  ``alignments.txt`` (``utt word state start_s end_s``) and, with ``--plot``, one figure
  per utterance (the state path over the spectrogram, with each state's emission scores).

Exit status: 0 success; 3 finished but some utterances were skipped (bad audio, no label,
too short for the model; listed on stderr and in the output); 2 bad arguments; 1 a
malformed data directory, model file or unusable output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3

_EPILOG = """\
examples:
  # FSDD: a data directory per split, the digit (utt2digit) as the transcription
  speakergmm make-data-dir ../shared/data/fsdd/recordings data/train --include index=5-49
  speakergmm make-data-dir ../shared/data/fsdd/recordings data/test --include index=0-4
  cp data/train/utt2digit data/train/text; cp data/test/utt2digit data/test/text
  speakergmm hmm train --data data/train --out exp/digits.model --states 8 --mixtures 4
  speakergmm hmm decode --data data/test --model exp/digits.model --out exp/decode_test
  speakergmm hmm decode --data data/test --model exp/digits.model --out exp/decode_adapted \
      --adapt mllr+map
  speakergmm hmm align --data data/test --model exp/digits.model --out exp/align --plot \
      --utterances george-7_george_0

exit status: 0 done; 3 some utterances skipped (listed); 2 bad arguments; 1 bad data
directory, model file or output directory.
"""


def _fmt():
    return argparse.RawDescriptionHelpFormatter


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``hmm`` subcommand with its ``train``, ``decode`` and ``align`` actions."""
    hmm = subparsers.add_parser(
        "hmm", help="word HMMs: train, decode (accuracy/WER), forced alignment",
        description="GMM-HMM word models on Kaldi-style data directories with a 'text' file "
                    "(utt-id word).", epilog=_EPILOG, formatter_class=_fmt())
    actions = hmm.add_subparsers(dest="hmm_command", metavar="ACTION")
    hmm.set_defaults(func=lambda args: (hmm.print_help(), EXIT_USAGE)[1])

    p = actions.add_parser("train", help="train one HMM per word of the data directory's text",
                           description="Train one left-to-right GMM-HMM per word (HTK-style "
                                       "mixing up, Baum-Welch) and save them in one model file.",
                           epilog=_EPILOG, formatter_class=_fmt())
    p.add_argument("--data", required=True, metavar="DIR", help="data directory with a text file")
    p.add_argument("--out", required=True, metavar="MODEL", help="model file to write")
    g = p.add_argument_group("word models")
    g.add_argument("--states", type=_positive_int, default=8, help="HMM states per word (default: 8)")
    g.add_argument("--mixtures", type=_positive_int, default=4,
                   help="Gaussians per state (default: 4, which generalised better than 8 to unseen "
                        "speakers on FSDD, docs/hmm.md)")
    g.add_argument("--iterations", type=_positive_int, default=8,
                   help="Baum-Welch iterations at the final mixture size (default: 8)")
    g.add_argument("--iter-per-split", "--grow-iterations", dest="iter_per_split", type=_positive_int,
                   default=4, help="Baum-Welch iterations at each mixture size while splitting (default: 4; "
                                   "--grow-iterations is its former name)")
    g.add_argument("--no-grow", dest="grow", action="store_false",
                   help="fit the full mixtures at initialisation instead of mixing up by splitting")
    g.add_argument("--skips", type=int, default=0, help="states a transition may skip (default: 0)")
    g.add_argument("--covariance-type", choices=("diag", "full", "spherical"), default="diag")
    g.add_argument("--reg-covar", type=float, default=1e-3,
                   help="added to the variances in every M-step (default: 1e-3)")
    g.add_argument("--variance-floor-ratio", type=float, default=None,
                   help="variance floor as a fraction of the global variance (HCompV -f)")
    _add_feature_options(p)
    p.add_argument("--silence-out", metavar="HMM",
                   help="also train a silence model (one state, 4 Gaussians) on the frames the "
                        "VAD drops from the training utterances, for 'decode --connected "
                        "--silence-model'")
    p.add_argument("--cmvn", choices=("utterance", "speaker"), default="speaker",
                   help="feature mean and variance normalisation over each utterance or over all "
                        "of a speaker's utterances (utt2spk; default: speaker); decode and align "
                        "use the model's")
    _add_run_options(p)
    p.set_defaults(func=_run_train)

    p = actions.add_parser("decode", help="recognise every utterance; accuracy and WER",
                           description="Pick the most likely word of every utterance; with a text "
                                       "file, score it (accuracy, WER, confusion matrix).",
                           epilog=_EPILOG, formatter_class=_fmt())
    p.add_argument("--data", required=True, metavar="DIR", help="data directory (text optional)")
    p.add_argument("--model", required=True, metavar="MODEL", help="model file from 'hmm train'")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--scoring", choices=("forward", "viterbi"), default=None,
                   help="total likelihood or best path (default: the model's)")
    p.add_argument("--no-plot", action="store_true", help="skip confusion.png")
    p.add_argument("--adapt", choices=("none", "mllr", "map", "mllr+map"), default="none",
                   help="adapt the word models to each speaker of the data (utt2spk) without "
                        "transcriptions before recognising its utterances (default: none)")
    p.add_argument("--adapt-iterations", type=_positive_int, default=4,
                   help="rounds of recognise-then-adapt (default: 4)")
    p.add_argument("--connected", action="store_true",
                   help="decode each utterance as a string of words (Viterbi token passing over "
                        "the word models, word-loop grammar); results.txt then holds the "
                        "hypotheses in Kaldi's text format, scored by WER")
    p.add_argument("--silence-model", metavar="HMM",
                   help="with --connected: a silence model from 'train --silence-out' that may "
                        "appear before, between and after words")
    p.add_argument("--insertion-penalty", type=float, default=0.0,
                   help="with --connected: nats added per word (negative: fewer insertions; "
                        "tune it on development data; default: 0)")
    _add_feature_options(p, from_model=True)
    _add_run_options(p)
    p.set_defaults(func=_run_decode)

    p = actions.add_parser("align", help="forced alignment of each utterance to its word's HMM",
                           description="Viterbi-align each utterance to the HMM of the word in "
                                       "text: state segments with times, and plots on request.",
                           epilog=_EPILOG, formatter_class=_fmt())
    p.add_argument("--data", required=True, metavar="DIR", help="data directory with a text file")
    p.add_argument("--model", required=True, metavar="MODEL", help="model file from 'hmm train'")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--plot", action="store_true", help="one PNG per utterance in OUT/plots/")
    p.add_argument("--utterances", nargs="+", metavar="UTT", help="align only these utterances")
    _add_run_options(p)
    p.set_defaults(func=_run_align)


def _add_feature_options(p: argparse.ArgumentParser, from_model: bool = False) -> None:
    g = p.add_argument_group("features")
    g.add_argument("--feats", metavar="DIR",
                   help="feature cache (default: features/<data name> next to the output)")
    if not from_model:
        g.add_argument("--sample-rate", type=int, choices=(8000, 16000), default=None,
                       help="front-end rate (default: from the first audio file)")
        g.add_argument("--feature-config", metavar="JSON", help="front-end configuration file")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", "-j", type=int, default=1, help="worker processes (0: all cores; default: 1)")
    p.add_argument("--quiet", "-q", action="store_true", help="no log lines on stderr")


# --------------------------------------------------------------------------- helpers
class _Failure(Exception):
    def __init__(self, message: str, status: int = EXIT_INPUT):
        super().__init__(message)
        self.status = status


def _logger(args: argparse.Namespace):
    if args.quiet:
        return lambda line: None
    return lambda line: print(line, file=sys.stderr, flush=True)


def read_text(data_dir: Path) -> tuple[dict[str, list[str]], list[str]]:
    """The transcriptions of a data directory's ``text`` file (``utt-id word [word ...]``).

    Returns the words of each utterance and the problems found (named by file and line:
    an utterance without words, a duplicate, an utterance not in ``wav.scp`` is left to
    the caller).
    """
    path = data_dir / "text"
    if not path.is_file():
        raise _Failure(f"{path}: missing (a data directory for word models needs a text file "
                       "'utt-id word')")
    text: dict[str, list[str]] = {}
    problems: list[str] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            parts = line.split()
            if not parts:
                continue
            utt, words = parts[0], parts[1:]
            if not words:
                problems.append(f"{path}:{number}: utterance {utt!r} has no words")
            elif utt in text:
                problems.append(f"{path}:{number}: duplicate utterance {utt!r}")
            else:
                text[utt] = words
    return text, problems


def _feature_config(args: argparse.Namespace, data_dir: str):
    from speakergmm.features import FeatureConfig
    from speakergmm.verification.pipeline import default_feature_config

    if getattr(args, "feature_config", None):
        config = FeatureConfig.load(args.feature_config)
        return config.replace(sample_rate=args.sample_rate) if args.sample_rate else config
    return default_feature_config(data_dir, getattr(args, "sample_rate", None))


def _normalized(store, utts: list[str], utt2spk: dict, cmvn: str) -> dict:
    """Features of ``utts`` normalised per utterance or per speaker (the cache has none)."""
    import numpy as np

    from speakergmm.features.processing import cmvn as utterance_cmvn
    from speakergmm.hmm.adaptation import speaker_cmvn

    raw = {u: np.asarray(store[u], dtype=np.float64) for u in utts}
    if cmvn == "speaker":
        return speaker_cmvn(raw, utt2spk)
    return {u: utterance_cmvn(x) for u, x in raw.items()}


def _features(args: argparse.Namespace, config, out_anchor: Path, log) -> tuple[Any, Any, list[str]]:
    """Read the data directory and fill the feature cache; returns (data, store, problems)."""
    from speakergmm.corpus import CorpusError, read_data_dir
    from speakergmm.features import FeatureStore, extract_data_dir

    try:
        data = read_data_dir(args.data)
    except CorpusError as exc:
        raise _Failure(str(exc)) from exc
    feats = Path(args.feats) if args.feats else out_anchor.resolve().parent / "features" / Path(args.data).resolve().name
    report = extract_data_dir(data, feats, config, jobs=args.jobs)
    log(f"features: {report.n_ok} of {report.n_utterances} utterances in {feats}")
    problems = [f"{s.utt}: skipped by the front end ({s.reason})" for s in report.skipped]
    return data, FeatureStore(feats), problems


def _finish(command: str, problems: list[str], log) -> int:
    if not problems:
        return EXIT_OK
    print(f"speakergmm hmm {command}: finished, but {len(problems)} utterance(s) were skipped:",
          file=sys.stderr)
    for line in problems[:50]:
        print(f"  {line}", file=sys.stderr)
    if len(problems) > 50:
        print(f"  ... and {len(problems) - 50} more", file=sys.stderr)
    return EXIT_PARTIAL


def _guard(command: str, run, args: argparse.Namespace) -> int:
    from speakergmm.features import FeatureConfigError
    from speakergmm.io import ModelFileError

    try:
        return run(args)
    except _Failure as exc:
        print(f"speakergmm hmm {command}: {exc}", file=sys.stderr)
        return exc.status
    except (ModelFileError, FeatureConfigError, OSError) as exc:
        print(f"speakergmm hmm {command}: {exc}", file=sys.stderr)
        return EXIT_INPUT


def _load_model(path: str):
    from speakergmm.features import FeatureConfig
    from speakergmm.hmm import WordRecognizer

    if not Path(path).is_file():
        raise _Failure(f"--model {path}: no such file")
    rec = WordRecognizer.load(path)
    config = rec.meta_.get("feature_config")
    if config is None:
        raise _Failure(f"--model {path}: the model file does not record its feature configuration "
                       "(train it with 'speakergmm hmm train')")
    return rec, FeatureConfig.from_dict(config)


# --------------------------------------------------------------------------- train
def _run_train(args: argparse.Namespace) -> int:
    return _guard("train", _train, args)


def _train(args: argparse.Namespace) -> int:
    import numpy as np

    from speakergmm.hmm import GMMHMM, NoPathError, Topology, WordRecognizer

    log = _logger(args)
    if args.skips < 0:
        raise _Failure(f"--skips must be >= 0, got {args.skips}", EXIT_USAGE)
    if args.variance_floor_ratio is not None and not args.variance_floor_ratio > 0:
        raise _Failure(f"--variance-floor-ratio must be > 0, got {args.variance_floor_ratio}", EXIT_USAGE)
    if not Path(args.data).is_dir():
        raise _Failure(f"--data {args.data}: no such directory")
    text, problems = read_text(Path(args.data))
    # The cache holds features without CMVN; they are normalised here per utterance or speaker.
    config = _feature_config(args, args.data).replace(cmvn="none")
    out = Path(args.out)
    data, store, skipped = _features(args, config, out, log)
    problems += skipped
    feats = _normalized(store, [u for u in data.utterances if u in store], data.utt2spk, args.cmvn)
    train: dict[str, list[np.ndarray]] = {}
    for utt in data.utterances:
        words = text.get(utt)
        if words is None:
            problems.append(f"{utt}: no transcription in text")
        elif len(words) != 1:
            problems.append(f"{utt}: {len(words)} words in text; word models train on one word "
                            "per utterance")
        elif utt in feats:
            train.setdefault(words[0], []).append(feats[utt])
    if not train:
        raise _Failure(f"--data {args.data}: no utterance has both features and a one-word transcription")
    hmm = GMMHMM(n_states=args.states, n_components=args.mixtures, covariance_type=args.covariance_type,
                 n_skips=args.skips, grow_mixtures=args.grow, iter_per_split=args.iter_per_split,
                 n_iter=args.iterations, reg_covar=args.reg_covar)
    # A word model needs sequences at least as long as its shortest path; drop shorter ones.
    min_frames = Topology.left_to_right(args.states, args.skips).min_frames
    for word, seqs in train.items():
        kept = [x for x in seqs if x.shape[0] >= min_frames]
        if len(kept) < len(seqs):
            problems.append(f"word {word!r}: {len(seqs) - len(kept)} utterance(s) shorter than "
                            f"{int(min_frames)} frames left out of training")
        train[word] = kept
    empty = sorted(w for w, seqs in train.items() if not seqs)
    if empty:
        raise _Failure(f"no usable training utterance for word(s) {empty}")
    log(f"train: {sum(map(len, train.values()))} utterances of {len(train)} words; "
        f"{args.states} states x {args.mixtures} Gaussians per word")
    rec = WordRecognizer(hmm=hmm, variance_floor_ratio=args.variance_floor_ratio, jobs=args.jobs)
    try:
        rec.fit(train)
    except (ValueError, NoPathError) as exc:
        raise _Failure(str(exc)) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    rec.save(out, meta={"feature_config": config.to_dict(), "cmvn": args.cmvn,
                         "data": str(Path(args.data).resolve())})
    log(f"train: {len(rec.words_)} word models -> {out}")
    if args.silence_out:
        silence = _train_silence(data, [u for u in data.utterances if u in feats], config, store,
                                 args.cmvn, problems)
        silence.save(args.silence_out, meta={"feature_config": config.to_dict(), "cmvn": args.cmvn})
        log(f"train: silence model -> {args.silence_out}")
    return _finish("train", problems, log)


def _train_silence(data, utts: list[str], config, store, cmvn: str, problems: list[str]):
    """A one-state silence model on the frames the VAD drops, normalised like the speech."""
    import numpy as np

    from speakergmm.features import get_extractor
    from speakergmm.hmm import GMMHMM

    if not config.vad:
        raise _Failure("--silence-out needs the energy VAD (the silence frames are those it drops)",
                       EXIT_USAGE)
    speech, everything = get_extractor(config), get_extractor(config.replace(vad=False))
    by_speaker: dict[str, list[np.ndarray]] = {}
    for utt in utts:
        by_speaker.setdefault(data.utt2spk[utt], []).append(np.asarray(store[utt], dtype=np.float64))
    speaker_stats = {spk: (np.concatenate(a).mean(axis=0), np.concatenate(a).std(axis=0))
                     for spk, a in by_speaker.items()}
    frames = []
    for utt in utts:
        try:
            voiced = speech.extract_full(data.wav[utt]).voiced
            everything_frames = everything.extract_full(data.wav[utt]).features
        except Exception as exc:  # noqa: BLE001 - reported, and left out of the silence model
            problems.append(f"{utt}: left out of the silence model ({exc})")
            continue
        if voiced.all():
            continue
        if cmvn == "speaker":
            mean, std = speaker_stats[data.utt2spk[utt]]
        else:
            kept = np.asarray(store[utt], dtype=np.float64)
            mean, std = kept.mean(axis=0), kept.std(axis=0)
        frames.append((everything_frames[~voiced] - mean) / np.where(std > 1e-10, std, 1.0))
    if not frames or sum(f.shape[0] for f in frames) < 20:
        raise _Failure("--silence-out: the VAD drops too few frames of the training data to train "
                       "a silence model")
    return GMMHMM(n_states=1, n_components=4, n_iter=5).fit([np.concatenate(frames)])


# --------------------------------------------------------------------------- decode
def _run_decode(args: argparse.Namespace) -> int:
    return _guard("decode", _decode, args)


def _decode(args: argparse.Namespace) -> int:
    import numpy as np

    from speakergmm.hmm.scoring import word_error_rate
    from speakergmm.io import atomic_write_json, atomic_write_text

    log = _logger(args)
    rec, config = _load_model(args.model)
    if args.scoring:
        rec.scoring = args.scoring
    if not Path(args.data).is_dir():
        raise _Failure(f"--data {args.data}: no such directory")
    text: dict[str, list[str]] = {}
    problems: list[str] = []
    if (Path(args.data) / "text").is_file():
        text, problems = read_text(Path(args.data))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data, store, skipped = _features(args, config, out / "results.json", log)
    problems += skipped
    utts = [u for u in data.utterances if u in store]
    if not utts:
        raise _Failure(f"--data {args.data}: no utterance has features")
    feats = _normalized(store, utts, data.utt2spk, rec.meta_.get("cmvn", "utterance"))
    X = [feats[u] for u in utts]
    if args.connected:
        if args.adapt != "none":
            raise _Failure("--adapt works with isolated words only, not with --connected", EXIT_USAGE)
        return _decode_connected(args, rec, data, utts, X, text, problems, out, log)
    joint = rec.log_likelihoods(X) + rec.log_priors_
    if args.adapt != "none":
        # Each speaker's utterances scored by the models adapted to that speaker (unsupervised).
        for speaker in sorted({data.utt2spk[u] for u in utts}):
            idx = [i for i, u in enumerate(utts) if data.utt2spk[u] == speaker]
            adapted = rec.adapt([X[i] for i in idx], method=args.adapt, iterations=args.adapt_iterations)
            joint[idx] = adapted.log_likelihoods([X[i] for i in idx]) + rec.log_priors_
        log(f"decode: word models adapted to each of {len(set(data.utt2spk[u] for u in utts))} "
            f"speaker(s) ({args.adapt}, {args.adapt_iterations} rounds)")
    impossible = ~np.isfinite(joint.max(axis=1))
    for u, x in zip(np.asarray(utts)[impossible], np.asarray(X, dtype=object)[impossible]):
        problems.append(f"{u}: {x.shape[0]} frames, too short for every word model")
    hypotheses = {u: rec.words_[int(j)] for u, j, bad in zip(utts, joint.argmax(axis=1), impossible)
                  if not bad}
    lines = [f"{u} {hypotheses[u]}" + (f" {' '.join(text[u])}" if u in text else "")
             for u in utts if u in hypotheses]
    atomic_write_text(out / "results.txt", "\n".join(lines) + "\n")
    results: dict[str, Any] = {"model": str(Path(args.model).resolve()), "data": str(Path(args.data).resolve()),
                               "n_utterances": len(data.utterances), "n_decoded": len(hypotheses),
                               "scoring": rec.scoring, "cmvn": rec.meta_.get("cmvn", "utterance"),
                               "adapt": args.adapt, "skipped": problems}
    scored = [u for u in hypotheses if u in text]
    if scored:
        counts = word_error_rate([text[u] for u in scored], [[hypotheses[u]] for u in scored])
        isolated = [u for u in scored if len(text[u]) == 1]
        correct = sum(hypotheses[u] == text[u][0] for u in isolated)
        labels = sorted(set(rec.words_) | {text[u][0] for u in isolated})
        index = {w: i for i, w in enumerate(labels)}
        confusion = np.zeros((len(labels), len(labels)), dtype=int)
        for u in isolated:
            confusion[index[text[u][0]], index[hypotheses[u]]] += 1
        results.update(accuracy=correct / len(isolated) if isolated else None,
                       n_scored=len(scored), **counts.to_dict(), labels=labels,
                       confusion_matrix=confusion.tolist())
        log(f"decode: accuracy {results['accuracy']:.4f} on {len(isolated)} utterances; "
            f"WER {100 * counts.wer:.2f} %")
        if not args.no_plot and isolated:
            try:
                from speakergmm.plotting import plot_confusion_matrix

                plot_confusion_matrix(confusion, out / "confusion.png", labels=labels,
                                      xlabel="recognised", ylabel="spoken", show_accuracy=True,
                                      title=f"{Path(args.data).name}: word recognition")
                results["plots"] = {"confusion": "confusion.png"}
            except ImportError as exc:
                log(f"decode: plot skipped ({exc})")
    atomic_write_json(out / "results.json", results)
    log(f"decode: {len(hypotheses)} utterances -> {out / 'results.txt'}, {out / 'results.json'}")
    return _finish("decode", problems, log)


def _decode_connected(args, rec, data, utts, X, text, problems, out: Path, log) -> int:
    from speakergmm.hmm import NoPathError
    from speakergmm.hmm.connected import ConnectedWordDecoder
    from speakergmm.hmm.scoring import word_error_rate
    from speakergmm.io import atomic_write_json, atomic_write_text

    silence = None
    if args.silence_model:
        from speakergmm.hmm import GMMHMM

        if not Path(args.silence_model).is_file():
            raise _Failure(f"--silence-model {args.silence_model}: no such file")
        silence = GMMHMM.load(args.silence_model)
        if silence.n_features != rec.n_features_:
            raise _Failure(f"--silence-model {args.silence_model}: {silence.n_features} features, "
                           f"the word models have {rec.n_features_}")
    decoder = ConnectedWordDecoder(rec, insertion_penalty=args.insertion_penalty, silence=silence)
    hypotheses: dict[str, list[str]] = {}
    for utt, x in zip(utts, X):
        try:
            hypotheses[utt] = list(decoder.decode([x])[0].words)
        except NoPathError:
            problems.append(f"{utt}: {x.shape[0]} frames, too short for every word model")
    atomic_write_text(out / "results.txt", "".join(f"{u} {' '.join(h)}\n" for u, h in hypotheses.items()))
    results: dict[str, Any] = {"model": str(Path(args.model).resolve()), "data": str(Path(args.data).resolve()),
                               "mode": "connected", "insertion_penalty": args.insertion_penalty,
                               "silence_model": args.silence_model,
                               "n_utterances": len(data.utterances), "n_decoded": len(hypotheses),
                               "cmvn": rec.meta_.get("cmvn", "utterance"), "skipped": problems}
    scored = [u for u in hypotheses if u in text]
    if scored:
        counts = word_error_rate([text[u] for u in scored], [hypotheses[u] for u in scored])
        results.update(n_scored=len(scored), **counts.to_dict(),
                       errors=[{"utterance": u, "reference": " ".join(text[u]),
                                "hypothesis": " ".join(hypotheses[u])}
                               for u, a in zip(scored, counts.alignments) if a.errors])
        log(f"decode: WER {100 * counts.wer:.2f} % on {counts.n_reference} words "
            f"(S {counts.substitutions}, D {counts.deletions}, I {counts.insertions}); "
            f"{100 * (1 - counts.sentence_error_rate):.1f} % of {len(scored)} strings correct")
    atomic_write_json(out / "results.json", results)
    log(f"decode: {len(hypotheses)} utterances -> {out / 'results.txt'}, {out / 'results.json'}")
    return _finish("decode", problems, log)


# --------------------------------------------------------------------------- align
def _aligner_normalization(rec, config, extractor, data, utts: list[str], problems: list[str]):
    """How align normalises an utterance's features: as the model was trained.

    With speaker CMVN the statistics come from all utterances of the aligned speakers in
    the data directory (unreadable ones are left out and reported).
    """
    import numpy as np

    from speakergmm.features.processing import cmvn as utterance_cmvn

    if rec.meta_.get("cmvn", "utterance") != "speaker":
        return lambda x, speaker: utterance_cmvn(x) if config.cmvn == "none" else x
    speakers = {data.utt2spk[u] for u in utts}
    frames: dict[str, list[np.ndarray]] = {}
    for utt in data.utterances:
        if data.utt2spk[utt] in speakers:
            try:
                features = extractor.extract_full(data.wav[utt]).features
            except Exception as exc:  # noqa: BLE001 - reported, and left out of the statistics
                if utt not in utts:
                    problems.append(f"{utt}: left out of speaker CMVN, unreadable audio ({exc})")
                continue
            frames.setdefault(data.utt2spk[utt], []).append(np.asarray(features, dtype=np.float64))
    stats = {}
    for speaker, arrays in frames.items():
        stacked = np.concatenate(arrays)
        std = stacked.std(axis=0)
        stats[speaker] = (stacked.mean(axis=0), np.where(std > 1e-10, std, 1.0))

    def normalize(x, speaker):
        mean, std = stats[speaker]
        return (x - mean) / std

    return normalize


def _run_align(args: argparse.Namespace) -> int:
    return _guard("align", _align, args)


def _align(args: argparse.Namespace) -> int:
    import numpy as np

    from speakergmm.corpus import CorpusError, read_data_dir
    from speakergmm.features import get_extractor
    from speakergmm.features.audio import read_audio
    from speakergmm.hmm import NoPathError
    from speakergmm.hmm.plots import plot_alignment, state_segments
    from speakergmm.io import atomic_write_json, atomic_write_text
    from speakergmm.utils import progress

    log = _logger(args)
    rec, config = _load_model(args.model)
    try:
        data = read_data_dir(args.data)
    except CorpusError as exc:
        raise _Failure(str(exc)) from exc
    text, problems = read_text(Path(args.data))
    utts = data.utterances
    if args.utterances:
        unknown = sorted(set(args.utterances) - set(utts))
        if unknown:
            raise _Failure(f"--utterances: not in {args.data}: {', '.join(unknown)}", EXIT_USAGE)
        utts = [u for u in utts if u in set(args.utterances)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    extractor = get_extractor(config)
    normalize = _aligner_normalization(rec, config, extractor, data, utts, problems)
    lines: list[str] = []
    summary: dict[str, Any] = {}
    plots: dict[str, str] = {}
    for utt in progress(utts, desc="aligning", unit="utt"):
        words = text.get(utt)
        if words is None or len(words) != 1 or words[0] not in rec.models_:
            problems.append(f"{utt}: " + ("no transcription in text" if words is None else
                                          f"transcription {' '.join(words)!r} is not one known word"))
            continue
        word = words[0]
        try:
            extraction = extractor.extract_full(data.wav[utt])
        except Exception as exc:  # noqa: BLE001 - bad audio of any kind: report, go on
            problems.append(f"{utt}: unreadable audio {data.wav[utt]} ({exc})")
            continue
        X = normalize(np.asarray(extraction.features, dtype=np.float64), data.utt2spk[utt])
        try:
            score, states = rec.align(X, word)
        except (NoPathError, ValueError) as exc:
            problems.append(f"{utt}: {exc}")
            continue
        kept = np.flatnonzero(extraction.voiced)  # the VAD may drop frames: place kept ones in time
        times = (kept * config.frame_shift_samples + config.frame_length_samples / 2) / config.sample_rate
        # Segment edges half a frame shift either side of the frame centres, in samples first
        # so that one segment's end and the next one's start are the same number.
        centre = kept * config.frame_shift_samples + config.frame_length_samples / 2
        half = config.frame_shift_samples / 2
        segments = []
        for state, a, b in state_segments(states):
            start = float((centre[a] - half) / config.sample_rate)
            end = float((centre[b - 1] + half) / config.sample_rate)
            lines.append(f"{utt} {word} {state} {start:.3f} {end:.3f}")
            segments.append({"state": state, "start_s": round(start, 3), "end_s": round(end, 3),
                             "frames": b - a})
        summary[utt] = {"word": word, "log_prob": score, "segments": segments}
        if args.plot:
            try:
                signal, rate = read_audio(data.wav[utt])
                target = out / "plots" / f"{utt}.png"
                plot_alignment(signal, rate, states, times, path=target,
                               log_emissions=rec.models_[word].log_emissions(X),
                               title=f"{utt}: Viterbi alignment to '{word}' (log p = {score:.1f})")
                plots[utt] = str(target.relative_to(out))
            except ImportError as exc:
                log(f"align: plots skipped ({exc})")
                args.plot = False
    atomic_write_text(out / "alignments.txt", "\n".join(lines) + ("\n" if lines else ""))
    atomic_write_json(out / "alignments.json", {"model": str(Path(args.model).resolve()),
                                                "utterances": summary, "plots": plots,
                                                "skipped": problems})
    log(f"align: {len(summary)} utterances -> {out / 'alignments.txt'}"
        + (f", {len(plots)} plots in {out / 'plots'}" if plots else ""))
    return _finish("align", problems, log)
