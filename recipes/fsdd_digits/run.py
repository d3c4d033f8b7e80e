#!/usr/bin/env python
"""Spoken digit recognition on the Free Spoken Digit Dataset with GMM-HMM word models.

The classic isolated-word recogniser: one left-to-right HMM per digit whose states emit
Gaussian mixtures, trained by Baum-Welch, and decoding by picking the word model with the
highest likelihood. Made speaker-independent by classical normalisation and adaptation:
features normalised per speaker (speaker-level CMVN) and the word models adapted to each
test speaker without transcriptions (one MLLR mean transform for all Gaussians, then MAP,
recognising again after each of four rounds); optionally VTLN (``--vtln``).

Stages (each reported with its time in ``results.json``):

1. ``data``      a Kaldi-style data directory of the recordings (``OUT/data``)
2. ``features``  MFCCs + deltas into a resumable feature cache (``OUT/feats``); unreadable
                 or silent files are skipped and listed at the end (exit status 3)
3. ``train``     one GMM-HMM per digit on the conventional training split (recording
                 index 5-49 of every speaker), saved as ``OUT/digits.model``
4. ``test``      accuracy on the conventional test split (index 0-4, all six speakers),
                 the models adapted to each test speaker on that speaker's test recordings
5. ``loso``      leave-one-speaker-out: train on five speakers, test on all recordings of
                 the sixth, for each speaker (unless ``--no-loso``) -- the honest,
                 speaker-independent number -- for every technique: per-utterance CMVN
                 (no adaptation), speaker CMVN, + MLLR, + MAP, + MLLR + MAP (the system),
                 and with ``--vtln`` + VTLN and + VTLN + MLLR + MAP. Finished folds are kept
                 in ``OUT/loso/`` and reused by a rerun with the same settings.
6. ``connected`` connected digits: strings of 2-5 held-out recordings (index 0-4) of one
                 speaker joined by 0.1-0.5 s pauses of low noise, decoded by Viterbi token
                 passing over the word models in a word-loop grammar with an optional
                 silence model (trained on the frames the VAD drops from recordings
                 5-7) and a word insertion penalty tuned on strings of recordings 5-9;
                 WER by alignment, with and without the silence model (``--connected 0``
                 skips it)
7. ``plots``     ``confusion.png``, ``loso_confusion.png``, ``loso_techniques.png`` (fold by
                 fold, per technique) and ``alignment.png`` (a Viterbi alignment of one test
                 utterance drawn over its spectrogram)

Usage::

    python recipes/fsdd_digits/run.py --out exp/fsdd_digits
    python recipes/fsdd_digits/run.py --data /path/to/fsdd/recordings --out DIR --no-loso
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

from speakergmm.corpus import make_data_dir  # noqa: E402
from speakergmm.features import FeatureConfig, FeatureStore, extract_data_dir, get_extractor  # noqa: E402
from speakergmm.features.audio import read_audio  # noqa: E402
from speakergmm.features.processing import cmvn  # noqa: E402
from speakergmm.hmm import GMMHMM, WordRecognizer  # noqa: E402
from speakergmm.features.audio import INT16_SCALE  # noqa: E402
from speakergmm.hmm.adaptation import speaker_cmvn, vtln_warp_factor, warped_extractor  # noqa: E402
from speakergmm.hmm.connected import ConnectedWordDecoder, join_with_pauses, tune_insertion_penalty  # noqa: E402
from speakergmm.hmm.scoring import word_error_rate  # noqa: E402
from speakergmm.io import atomic_write_json  # noqa: E402

DIGITS = [str(d) for d in range(10)]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "fsdd" / "recordings"

#: The recogniser's settings (measured on the conventional split; see docs/hmm.md).
MODEL_SETTINGS = dict(n_states=8, n_components=4, covariance_type="diag", n_skips=0,
                      grow_mixtures=True, iter_per_split=4, n_iter=8, viterbi_iter=0, reg_covar=1e-3)
#: The front end's settings (FeatureConfig fields that differ from its defaults): no
#: per-utterance CMVN in the cache; the recipe normalises per speaker (or per utterance).
FEATURE_SETTINGS: dict = {"cmvn": "none"}
#: Unsupervised adaptation to each test speaker (WordRecognizer.adapt).
ADAPTATION = dict(method="mllr+map", iterations=4, relevance_factor=16.0)
#: VTLN warp factors searched (``--vtln``).
VTLN_WARPS = (0.88, 0.92, 0.96, 1.0, 1.04, 1.08, 1.12)
#: The techniques compared leave-one-speaker-out, and the one the system uses.
TECHNIQUES = ("utterance CMVN", "speaker CMVN", "+ MLLR", "+ MAP", "+ MLLR + MAP")
VTLN_TECHNIQUES = ("+ VTLN", "+ VTLN + MLLR + MAP")
SYSTEM = "+ MLLR + MAP"


def log(message: str) -> None:
    print(f"[fsdd_digits] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None,
                        help="FSDD recordings folder (default: $SPEAKERGMM_FSDD, else "
                             "../shared/data/fsdd/recordings next to the repository)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--jobs", type=int, default=0,
                        help="worker processes for features and word models (0: all cores)")
    parser.add_argument("--no-loso", dest="loso", action="store_false",
                        help="skip the leave-one-speaker-out evaluation")
    parser.add_argument("--states", type=int, default=MODEL_SETTINGS["n_states"], help="HMM states per digit")
    parser.add_argument("--mixtures", type=int, default=MODEL_SETTINGS["n_components"],
                        help="Gaussians per state")
    parser.add_argument("--iterations", type=int, default=MODEL_SETTINGS["n_iter"],
                        help="Baum-Welch iterations at the final mixture size")
    parser.add_argument("--plot-utterance", default=None,
                        help="test utterance to draw the alignment of (default: the first '7')")
    parser.add_argument("--connected", type=int, default=120, metavar="N",
                        help="connected-digit test strings to decode (0: skip; default: 120)")
    parser.add_argument("--loso-connected", type=int, default=0, metavar="N",
                        help="also decode N connected-digit strings of each held-out speaker "
                             "(unadapted and adapted models; default: 0, off)")
    parser.add_argument("--vtln", action="store_true",
                        help="also measure VTLN leave-one-speaker-out (features of the held-out "
                             f"speaker recomputed for {len(VTLN_WARPS)} warp factors: slow)")
    return parser.parse_args(argv)


def resolve_data(path: Path | None) -> Path:
    if path is None:
        path = Path(os.environ.get("SPEAKERGMM_FSDD", DEFAULT_DATA))
    if not path.is_dir():
        raise SystemExit(f"fsdd_digits: FSDD recordings folder {path} does not exist "
                         "(give --data or set $SPEAKERGMM_FSDD)")
    return path


def normalised_features(store: FeatureStore, utt2spk: dict) -> dict[str, dict[str, np.ndarray]]:
    """The cached features normalised two ways: ``"speaker"`` (mean and variance over all of
    each speaker's frames) and ``"utterance"`` (over each utterance: the front end's CMVN)."""
    raw = {utt: np.asarray(store[utt], dtype=np.float64) for utt in store.utterances}
    return {"speaker": speaker_cmvn(raw, utt2spk),
            "utterance": {utt: cmvn(x) for utt, x in raw.items()}}


def load_split(feats: dict[str, np.ndarray], fields: dict, keep) -> tuple[dict, list, list, list]:
    """Training sequences by digit, and test sequences / labels / utterance ids, by ``keep``."""
    train: dict[str, list[np.ndarray]] = {d: [] for d in DIGITS}
    test_X, test_y, test_utts = [], [], []
    for utt in sorted(feats):
        role = keep(fields["speaker"][utt], int(fields["index"][utt]))
        if role is None:
            continue
        X = feats[utt]
        digit = fields["digit"][utt]
        if role == "train":
            train[digit].append(X)
        else:
            test_X.append(X)
            test_y.append(digit)
            test_utts.append(utt)
    return train, test_X, test_y, test_utts


def evaluate(rec: WordRecognizer, X: list, y: list) -> dict:
    """Accuracy, errors, per-digit accuracy and confusion matrix of ``rec`` on ``X``."""
    return score_predictions(rec.predict(X), y)


def score_predictions(predicted, y: list) -> dict:
    predicted = np.asarray(predicted)
    labels = np.asarray(y)
    confusion = np.zeros((len(DIGITS), len(DIGITS)), dtype=int)
    index = {d: i for i, d in enumerate(DIGITS)}
    for truth, guess in zip(labels, predicted):
        confusion[index[truth], index[guess]] += 1
    per_digit = {d: float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None
                 for i, d in enumerate(DIGITS)}
    return {"accuracy": float(np.mean(predicted == labels)), "n_test": int(labels.size),
            "n_errors": int(np.sum(predicted != labels)), "per_digit_accuracy": per_digit,
            "confusion_matrix": confusion.tolist(), "labels": DIGITS}


def train_recognizer(train: dict, settings: dict, jobs: int) -> WordRecognizer:
    missing = [d for d, seqs in train.items() if not seqs]
    if missing:
        raise SystemExit(f"fsdd_digits: no training recordings of digit(s) {missing}")
    return WordRecognizer(hmm=GMMHMM(**settings), jobs=jobs).fit(train)


def adapt_per_speaker(rec: WordRecognizer, X: list, speakers: list, **adaptation) -> list:
    """Each speaker's utterances recognised by the models adapted to that speaker (no labels)."""
    predicted = np.empty(len(X), dtype=object)
    for spk in sorted(set(speakers)):
        idx = [i for i, s in enumerate(speakers) if s == spk]
        adapted = rec.adapt([X[i] for i in idx], **adaptation)
        predicted[idx] = adapted.predict([X[i] for i in idx])
    return list(predicted)


def vtln_features(utts: list, wav: dict, utt2spk: dict, config: FeatureConfig, warp: float) -> list:
    """The utterances' features with the filterbank warped by ``warp``, speaker-normalised."""
    extractor = warped_extractor(config, warp)
    raw = {u: np.asarray(extractor.extract_full(wav[u]).features, dtype=np.float64) for u in utts}
    normalised = speaker_cmvn(raw, utt2spk)
    return [normalised[u] for u in utts]


def run_fold(held_out: str, feats: dict, fields: dict, settings: dict, jobs: int,
             vtln: dict | None, connected: tuple[ConnectedSetup, int] | None = None) -> dict:
    """One leave-one-speaker-out fold: every technique's result on the held-out speaker."""
    keep = lambda spk, idx: "test" if spk == held_out else "train"  # noqa: E731
    results: dict[str, dict] = {}
    train, X, y, _ = load_split(feats["utterance"], fields, keep)
    results["utterance CMVN"] = evaluate(train_recognizer(train, settings, jobs), X, y)
    train, X, y, utts = load_split(feats["speaker"], fields, keep)
    rec = train_recognizer(train, settings, jobs)
    results["speaker CMVN"] = evaluate(rec, X, y)
    adaptation = {k: v for k, v in ADAPTATION.items() if k != "method"}
    adapted = {}
    for name, method in (("+ MLLR", "mllr"), ("+ MAP", "map"), ("+ MLLR + MAP", "mllr+map")):
        adapted[name] = rec.adapt(X, method=method, **adaptation)
        results[name] = evaluate(adapted[name], X, y)
    if connected is not None:
        # Strings of the unseen speaker's recordings; silence model and insertion penalty from
        # the training speakers only; word models unadapted and adapted (on isolated words).
        setup, n_strings = connected
        others = sorted(s for s in setup.speaker_stats if s != held_out)
        silence = setup.train_silence(others)
        dev = make_strings(setup.wav, fields, others, range(5, 10), 30, seed=1)
        test = make_strings(setup.wav, fields, [held_out], range(0, 50), n_strings, seed=2)
        dev_X, test_X = setup.featurise(dev), setup.featurise(test)
        results["connected"] = {
            "n_strings": len(test), "n_words": sum(len(w) for _, w, _ in test),
            "speaker CMVN": setup.evaluate(rec, silence, dev, dev_X, test, test_X),
            "+ MLLR + MAP": setup.evaluate(adapted["+ MLLR + MAP"], silence, dev, dev_X, test, test_X)}
    if vtln is not None:
        cache: dict[float, list] = {}

        def score(warp: float) -> float:
            cache[warp] = X if warp == 1.0 else vtln_features(utts, vtln["wav"], fields["speaker"],
                                                              vtln["config"], warp)
            return float(rec.log_likelihoods(cache[warp]).max(axis=1).sum())

        best, scores = vtln_warp_factor(score, VTLN_WARPS)
        warped = cache[best]
        results["+ VTLN"] = dict(evaluate(rec, warped, y), warp=best,
                                 warp_log_likelihoods={str(k): v for k, v in scores.items()})
        results["+ VTLN + MLLR + MAP"] = evaluate(rec.adapt(warped, **ADAPTATION), warped, y)
    return results


#: Word insertion penalties tried on the development strings (nats per word).
INSERTION_PENALTIES = (-320.0, -240.0, -160.0, -120.0, -80.0, -40.0, 0.0)


def make_strings(wav: dict, fields: dict, speakers: list, indices: range, n: int,
                 seed: int) -> list[tuple[str, list, np.ndarray]]:
    """``n`` digit strings (speaker, words, signal): 2-5 recordings of one speaker joined by pauses."""
    rng = np.random.default_rng(seed)
    by_key = {(fields["speaker"][u], fields["digit"][u], int(fields["index"][u])): u for u in wav}
    strings = []
    for k in range(n):
        speaker = speakers[k % len(speakers)]
        words = [str(d) for d in rng.integers(0, 10, size=int(rng.integers(2, 6)))]
        keys = [(speaker, w, int(rng.choice(indices))) for w in words]
        keys = [key for key in keys if key in by_key]
        if len(keys) < len(words):
            continue  # a recording missing from the data: leave the string out
        signals = [read_audio(wav[by_key[key]])[0] for key in keys]
        pauses = rng.uniform(0.1, 0.5, size=len(words) + 1)
        strings.append((speaker, words, join_with_pauses(signals, 8000, pauses, seed=int(rng.integers(2**31)))))
    return strings


def speaker_statistics(store: FeatureStore, fields: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Mean and standard deviation of each speaker's (un-normalised) frames: speaker CMVN."""
    frames: dict[str, list] = {}
    for utt in store.utterances:
        frames.setdefault(fields["speaker"][utt], []).append(np.asarray(store[utt], dtype=np.float64))
    stats = {}
    for spk, arrays in frames.items():
        stacked = np.concatenate(arrays)
        std = stacked.std(axis=0)
        stats[spk] = (stacked.mean(axis=0), np.where(std > 1e-10, std, 1.0))
    return stats


class ConnectedSetup:
    """What connected-digit decoding needs: the front end, speaker CMVN statistics, audio."""

    def __init__(self, wav: dict, fields: dict, config: FeatureConfig, speaker_stats: dict):
        self.wav, self.fields, self.config, self.speaker_stats = wav, fields, config, speaker_stats
        self.extractor = get_extractor(config)

    def normalise(self, x: np.ndarray, speaker: str) -> np.ndarray:
        mean, std = self.speaker_stats[speaker]
        return (np.asarray(x, dtype=np.float64) - mean) / std

    def featurise(self, strings) -> list:
        return [self.normalise(self.extractor.extract_full(sig / INT16_SCALE, 8000).features, spk)
                for spk, _, sig in strings]

    def train_silence(self, speakers: list) -> GMMHMM:
        """One state of 4 Gaussians on the frames the VAD drops from the speakers' recordings
        5-7 (normalised like the speech of their speaker)."""
        everything = get_extractor(self.config.replace(vad=False))
        frames = []
        for utt, path in self.wav.items():
            if self.fields["speaker"][utt] in speakers and int(self.fields["index"][utt]) in (5, 6, 7):
                voiced = self.extractor.extract_full(path).voiced
                frames.append(self.normalise(everything.extract_full(path).features[~voiced],
                                             self.fields["speaker"][utt]))
        return GMMHMM(n_states=1, n_components=4, n_iter=5).fit([np.concatenate(frames)])

    def evaluate(self, rec: WordRecognizer, silence: GMMHMM | None, dev: list, dev_X: list,
                 test: list, test_X: list) -> dict:
        """Tune the insertion penalty on the development strings, decode the test strings."""
        penalty, tuning = tune_insertion_penalty(rec, dev_X, [w for _, w, _ in dev], INSERTION_PENALTIES,
                                                 silence=silence)
        decoded = ConnectedWordDecoder(rec, insertion_penalty=penalty, silence=silence).decode(test_X)
        refs = [words for _, words, _ in test]
        counts = word_error_rate(refs, [list(d.words) for d in decoded])
        return {**counts.to_dict(), "insertion_penalty": penalty,
                "dev_wer": {str(p): c.wer for p, c in tuning.items()},
                "examples": [{"reference": " ".join(r), "hypothesis": " ".join(d.words)}
                             for r, d in list(zip(refs, decoded))[:5]]}


def run_connected(rec: WordRecognizer, setup: ConnectedSetup, n_strings: int) -> dict:
    """Connected digits with the conventional split's models; WER with and without silence."""
    speakers = sorted(setup.speaker_stats)
    silence = setup.train_silence(speakers)
    dev = make_strings(setup.wav, setup.fields, speakers, range(5, 10), max(30, n_strings // 2), seed=1)
    test = make_strings(setup.wav, setup.fields, speakers, range(0, 5), n_strings, seed=2)
    dev_X, test_X = setup.featurise(dev), setup.featurise(test)
    out: dict = {"n_strings": len(test), "n_words": sum(len(w) for _, w, _ in test), "n_dev_strings": len(dev)}
    for name, model in (("with_silence", silence), ("without_silence", None)):
        out[name] = setup.evaluate(rec, model, dev, dev_X, test, test_X)
    out["wer"] = out["with_silence"]["wer"]
    return out


def run_loso(feats: dict, fields, settings, jobs, out: Path, fingerprint: str,
             vtln: dict | None = None, connected: tuple[ConnectedSetup, int] | None = None) -> dict:
    """Leave-one-speaker-out folds; each finished fold is saved and reused on rerun."""
    speakers = sorted(set(fields["speaker"][u] for u in feats["speaker"]))
    techniques = TECHNIQUES + (VTLN_TECHNIQUES if vtln is not None else ())
    fold_dir = out / "loso"
    folds: dict[str, dict] = {}
    for n, held_out in enumerate(speakers, 1):
        fold_file = fold_dir / f"{held_out}.json"
        if fold_file.is_file():
            previous = json.loads(fold_file.read_text())
            wanted = set(techniques) | ({"connected"} if connected is not None else set())
            if previous.get("fingerprint") == fingerprint and wanted <= set(previous["result"]):
                log(f"loso fold {n}/{len(speakers)} ({held_out}): reused {fold_file}")
                folds[held_out] = previous["result"]
                continue
        t0 = time.perf_counter()
        result = run_fold(held_out, feats, fields, settings, jobs, vtln, connected)
        seconds = round(time.perf_counter() - t0, 2)
        atomic_write_json(fold_file, {"fingerprint": fingerprint, "result": result, "seconds": seconds})
        folds[held_out] = result
        log(f"loso fold {n}/{len(speakers)}: held out {held_out}: "
            + ", ".join(f"{t} {result[t]['accuracy']:.3f}" for t in techniques) + f" ({seconds:.1f} s)")
    per_technique = {}
    for technique in techniques:
        total = sum(np.asarray(folds[s][technique]["confusion_matrix"]) for s in speakers)
        per_technique[technique] = {
            "accuracy": float(np.trace(total) / total.sum()),  # pooled over all folds
            "per_speaker_accuracy": {s: folds[s][technique]["accuracy"] for s in speakers},
            "confusion_matrix": total.tolist(),
        }
        if technique == "+ VTLN":
            per_technique[technique]["warp_factors"] = {s: folds[s][technique]["warp"] for s in speakers}
    system = per_technique[SYSTEM]
    connected_words = None
    if connected is not None:
        connected_words = {}
        for technique in ("speaker CMVN", "+ MLLR + MAP"):
            totals = {k: sum(folds[s]["connected"][technique][k] for s in speakers)
                      for k in ("substitutions", "deletions", "insertions", "n_reference_words")}
            connected_words[technique] = {
                "wer": (totals["substitutions"] + totals["deletions"] + totals["insertions"])
                / totals["n_reference_words"],
                **totals,
                "per_speaker_wer": {s: folds[s]["connected"][technique]["wer"] for s in speakers}}
    return {
        "accuracy": system["accuracy"],
        "technique": SYSTEM,
        "mean_speaker_accuracy": float(np.mean(list(system["per_speaker_accuracy"].values()))),
        "n_test": int(np.asarray(system["confusion_matrix"]).sum()),
        "per_speaker_accuracy": system["per_speaker_accuracy"],
        "confusion_matrix": system["confusion_matrix"],
        "labels": DIGITS,
        "techniques": per_technique,
        "connected_words": connected_words,
    }


def plot_alignment_of(rec: WordRecognizer, utt: str, wav_path: str, digit: str,
                      config: FeatureConfig, path: Path, speaker_normalize) -> dict:
    from speakergmm.hmm.plots import plot_alignment, state_segments

    extraction = get_extractor(config).extract_full(wav_path)
    X = np.asarray(extraction.features, dtype=np.float64)
    X = speaker_normalize(X)
    score, states = rec.align(X, digit)
    kept = np.flatnonzero(extraction.voiced)  # VAD may drop frames: place kept ones in time
    times = (kept * config.frame_shift_samples + config.frame_length_samples / 2) / config.sample_rate
    signal, rate = read_audio(wav_path)
    emissions = rec.models_[digit].log_emissions(X)
    plot_alignment(signal, rate, states, times, path=path, log_emissions=emissions,
                   title=f"Viterbi alignment of {utt} to the HMM of '{digit}' "
                         f"(log p = {score:.1f})")
    return {"utterance": utt, "word": digit,
            "segments": [{"state": s, "start_s": round(float(times[a]), 3),
                          "end_s": round(float(times[b - 1]), 3)} for s, a, b in state_segments(states)]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = resolve_data(args.data)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    settings = dict(MODEL_SETTINGS, n_states=args.states, n_components=args.mixtures,
                    n_iter=args.iterations)
    config = FeatureConfig(**FEATURE_SETTINGS)
    timings: dict[str, float] = {}
    fingerprint = hashlib.sha256(json.dumps([settings, config.hash(), ADAPTATION, VTLN_WARPS, 2],
                                            sort_keys=True, default=str).encode()).hexdigest()[:16]

    t0 = time.perf_counter()
    made = make_data_dir(data, out / "data")
    if made.unmatched:
        log(f"{len(made.unmatched)} file(s) not named digit_speaker_index.wav were ignored: "
            f"{made.unmatched[:5]}")
    timings["data"] = time.perf_counter() - t0
    fields = dict(made.data.fields)
    fields["speaker"] = made.data.utt2spk
    log(f"data: {len(made.data.wav)} recordings of {len(set(made.data.utt2spk.values()))} speakers")

    t0 = time.perf_counter()
    report = extract_data_dir(out / "data", out / "feats", config, jobs=args.jobs)
    timings["features"] = time.perf_counter() - t0
    log(report.summary().splitlines()[0])
    store = FeatureStore(out / "feats")
    feats = normalised_features(store, made.data.utt2spk)

    t0 = time.perf_counter()
    train, test_X, test_y, test_utts = load_split(
        feats["speaker"], fields, lambda spk, idx: "test" if idx < 5 else "train")
    log(f"train: {sum(map(len, train.values()))} recordings; {settings['n_states']} states x "
        f"{settings['n_components']} Gaussians per digit")
    rec = train_recognizer(train, settings, args.jobs)
    rec.save(out / "digits.model", meta={"feature_config": config.to_dict(),
                                         "split": "conventional: index 5-49 train"})
    timings["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    unadapted = evaluate(rec, test_X, test_y)
    conventional = score_predictions(
        adapt_per_speaker(rec, test_X, [fields["speaker"][u] for u in test_utts], **ADAPTATION), test_y)
    timings["test"] = time.perf_counter() - t0
    log(f"test: accuracy {conventional['accuracy']:.4f} on {conventional['n_test']} recordings "
        f"({conventional['n_errors']} errors; {unadapted['accuracy']:.4f} before adaptation)")

    setup = ConnectedSetup(made.data.wav, fields, config, speaker_statistics(store, fields))
    connected = None
    if args.connected > 0:
        t0 = time.perf_counter()
        connected = run_connected(rec, setup, args.connected)
        timings["connected"] = time.perf_counter() - t0
        log(f"connected digits: WER {100 * connected['wer']:.2f} % on {connected['n_words']} words "
            f"({connected['n_strings']} strings; without the silence model "
            f"{100 * connected['without_silence']['wer']:.2f} %)")

    loso = None
    if args.loso:
        t0 = time.perf_counter()
        vtln = {"wav": made.data.wav, "config": config} if args.vtln else None
        loso = run_loso(feats, fields, settings, args.jobs, out, fingerprint, vtln,
                        (setup, args.loso_connected) if args.loso_connected > 0 else None)
        timings["loso"] = time.perf_counter() - t0
        log(f"leave-one-speaker-out: pooled accuracy {loso['accuracy']:.4f} on {loso['n_test']}")

    t0 = time.perf_counter()
    plots = {}
    alignment = None
    try:
        from speakergmm.plotting import plot_confusion_matrix

        words = {"labels": DIGITS, "xlabel": "recognised", "ylabel": "spoken", "show_accuracy": True}
        plot_confusion_matrix(np.asarray(conventional["confusion_matrix"]), out / "confusion.png",
                              title="FSDD digits, conventional split", **words)
        plots["confusion"] = "confusion.png"
        if loso is not None:
            plot_confusion_matrix(np.asarray(loso["confusion_matrix"]), out / "loso_confusion.png",
                                  title="FSDD digits, leave-one-speaker-out", **words)
            plots["loso_confusion"] = "loso_confusion.png"
            from speakergmm.hmm.plots import plot_technique_comparison

            techniques = loso["techniques"]
            plot_technique_comparison(
                {t: v["per_speaker_accuracy"] for t, v in techniques.items()}, out / "loso_techniques.png",
                title="FSDD digits, leave-one-speaker-out: accuracy per held-out speaker",
                pooled={t: v["accuracy"] for t, v in techniques.items()})
            plots["loso_techniques"] = "loso_techniques.png"
        utt = args.plot_utterance or next((u for u, d in zip(test_utts, test_y) if d == "7"), test_utts[0])
        if utt not in store:
            raise SystemExit(f"fsdd_digits: --plot-utterance {utt!r} has no features")
        spk = fields["speaker"][utt]
        spk_frames = np.concatenate([np.asarray(store[u], dtype=np.float64) for u in store.utterances
                                     if fields["speaker"][u] == spk])
        mean, std = spk_frames.mean(axis=0), spk_frames.std(axis=0)
        alignment = plot_alignment_of(rec, utt, made.data.wav[utt], fields["digit"][utt], config,
                                      out / "alignment.png",
                                      lambda x: (x - mean) / np.where(std > 1e-10, std, 1.0))
        plots["alignment"] = "alignment.png"
    except ImportError as exc:
        log(f"plots skipped: {exc}")
    timings["plots"] = time.perf_counter() - t0

    results = {
        "task": "FSDD isolated digit recognition, GMM-HMM word models",
        "split": "conventional: recording index 0-4 test, 5-49 train, all six speakers",
        **conventional,
        "accuracy_unadapted": unadapted["accuracy"],
        "leave_one_speaker_out": loso,
        "connected_words": connected,
        "settings": {"model": settings, "features": config.to_dict(), "normalisation": "speaker CMVN",
                     "adaptation": ADAPTATION, "data": str(data)},
        "timings_seconds": {k: round(v, 3) for k, v in timings.items()},
        "skipped_files": [{"utt": s.utt, "path": s.path, "reason": s.reason} for s in report.skipped],
        "alignment": alignment,
        "plots": plots,
        "model_file": "digits.model",
    }
    atomic_write_json(out / "results.json", results)
    log(f"wrote {out / 'results.json'}")
    if report.skipped:
        log(f"{len(report.skipped)} recording(s) were skipped:")
        for s in report.skipped:
            log(f"  {s}")
        return report.exit_status
    return 0


if __name__ == "__main__":
    sys.exit(main())
