"""Benchmark the front end on the Free Spoken Digit Dataset against the typical librosa path.

Compared, in the same run, over every FSDD file (3000 by default):

* ``peer``: what a typical user writes, per file: ``librosa.load(path, sr=None)``,
  ``librosa.feature.mfcc`` (20 cepstra; framing matched to ours: 25 ms window, 10 ms hop,
  256-point FFT, 23 mel bands -- librosa's defaults, a 2048-point window with a 64 ms hop at
  8 kHz, give a different and much coarser analysis, and fail on short files), two
  ``librosa.feature.delta`` calls and mean subtraction.
* ``ours_jobs1`` / ``ours_jobs2``: :func:`speakergmm.features.extract_data_dir` into a fresh
  cache with one and two worker processes: reading, MFCC, deltas, VAD, CMVN and writing the
  features to disk (the peer writes nothing).
* ``ours_cached``: the rerun that finds everything in the cache.

For each of ours the CPU seconds (parent and workers) are reported too, with the cores
the run had on average (CPU / wall): on a shared machine a two-job run that got
``cores_used`` well below 2 was starved by other work, not slowed by its own overheads.

Each timing is the best of ``--repeat`` interleaved rounds (the machine may be shared);
each round runs each of ours ``--ours-repeat`` times, the job counts in alternating order,
and the two-job speed-up is also given as the median of the ratios of adjacent runs;
start-up costs that both pay once per process (importing librosa, its numba kernels) are
done before timing. Prints ONE JSON line on stdout, a readable table on stderr.

Usage::

    python scripts/bench_features.py [--fsdd DIR] [--limit N] [--repeat 3] [--ours-repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def peer_features(path: str) -> np.ndarray:
    """The typical per-file librosa path (matched framing), as users write it."""
    import librosa

    y, sr = librosa.load(path, sr=None)
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20, n_fft=256, win_length=200,
                                hop_length=80, n_mels=23)
    feats = np.vstack([mfcc, librosa.feature.delta(mfcc), librosa.feature.delta(mfcc, order=2)])
    return (feats - feats.mean(axis=1, keepdims=True)).T


def _cpu_seconds() -> float:
    """CPU seconds used so far by this process and its finished children (pool workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fsdd", default=os.environ.get("SPEAKERGMM_FSDD"),
                        help="FSDD recordings folder (default: $SPEAKERGMM_FSDD or ../shared/data/fsdd/recordings)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N files")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds; best of them is reported")
    parser.add_argument("--ours-repeat", type=int, default=3,
                        help="runs of each of ours per round (default 3; ours is cheap next to the peer)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="worker counts to time (default 1 2)")
    args = parser.parse_args(argv)

    root = Path(__file__).resolve().parents[1]
    fsdd = Path(args.fsdd) if args.fsdd else root.parent / "shared" / "data" / "fsdd" / "recordings"
    if not fsdd.is_dir():
        print(f"bench_features: FSDD not found at {fsdd} (use --fsdd or $SPEAKERGMM_FSDD)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(root))
    os.environ.setdefault("SPEAKERGMM_PROGRESS", "0")

    import librosa  # noqa: F401  (start-up cost paid before timing, by both)

    from speakergmm.corpus import make_data_dir
    from speakergmm.features import FeatureConfig, extract_data_dir, extract_features

    work = Path(tempfile.mkdtemp(prefix="bench_features_"))
    try:
        data = make_data_dir(fsdd, work / "data").data
        if args.limit:
            data = data.subset(data.utterances[:args.limit])
            data.write(work / "data")
        paths = list(data.wav.values())
        config = FeatureConfig()
        # warm-up: imports, numba kernels, filterbanks, page cache
        peer_features(paths[0])
        extract_features(paths[0], config)
        for p in paths:
            Path(p).read_bytes()

        timings: dict[str, list[float]] = {"peer": []}
        cpu: dict[str, list[float]] = {}
        for jobs in args.jobs:
            timings[f"ours_jobs{jobs}"] = []
            cpu[f"ours_jobs{jobs}"] = []
        load_start = os.getloadavg()[0]
        timings["ours_cached"] = []
        audio_seconds = n_frames = None
        for round_ in range(args.repeat):
            start = time.perf_counter()
            for p in paths:
                peer_features(p)
            timings["peer"].append(time.perf_counter() - start)
            # ours is cheap next to the peer: several runs per round, the job counts in
            # alternating order so that a drifting machine favours neither
            for inner in range(args.ours_repeat):
                for jobs in (args.jobs if inner % 2 == 0 else args.jobs[::-1]):
                    out = work / f"feats_j{jobs}"
                    shutil.rmtree(out, ignore_errors=True)
                    start, cpu_start = time.perf_counter(), _cpu_seconds()
                    report = extract_data_dir(work / "data", out, config, jobs=jobs, show_progress=False)
                    timings[f"ours_jobs{jobs}"].append(time.perf_counter() - start)
                    cpu[f"ours_jobs{jobs}"].append(_cpu_seconds() - cpu_start)
                    if report.skipped:
                        print(report.summary(), file=sys.stderr)
                    audio_seconds, n_frames = report.audio_seconds, report.n_frames
            start = time.perf_counter()
            report = extract_data_dir(work / "data", work / f"feats_j{args.jobs[0]}", config,
                                      jobs=args.jobs[0], show_progress=False)
            timings["ours_cached"].append(time.perf_counter() - start)
            assert report.n_reused == report.n_ok
            print(f"round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in timings.items()),
                  file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    best = {k: min(v) for k, v in timings.items()}
    best_round = {k: int(np.argmin(v)) for k, v in timings.items()}
    result: dict[str, object] = {
        "benchmark": "features",
        "n_files": len(paths),
        "audio_seconds": round(audio_seconds, 2),
        "n_frames": n_frames,
        "repeat": args.repeat,
        "cpu_count": os.cpu_count(),
        "load_avg_start": round(load_start, 2),
        "load_avg_end": round(os.getloadavg()[0], 2),
        "peer_s": round(best["peer"], 3),
        "peer_rtf": round(best["peer"] / audio_seconds, 5),
    }
    for jobs in args.jobs:
        key = f"ours_jobs{jobs}"
        result[f"{key}_s"] = round(best[key], 3)
        result[f"{key}_rtf"] = round(best[key] / audio_seconds, 5)
        result[f"speedup_vs_peer_jobs{jobs}"] = round(best["peer"] / best[key], 2)
        # CPU seconds (parent + workers) of the best round, and how many cores it had on
        # average: below `jobs` means the machine did not give the run all its cores.
        cpu_s = cpu[key][best_round[key]]
        result[f"{key}_cpu_s"] = round(cpu_s, 3)
        result[f"{key}_cores_used"] = round(cpu_s / best[key], 2)
    if 1 in args.jobs:
        for jobs in args.jobs:
            if jobs != 1:
                key = f"ours_jobs{jobs}"
                result[f"speedup_jobs{jobs}_vs_jobs1"] = round(best["ours_jobs1"] / best[key], 2)
                # paired runs are a second apart: on a machine whose speed drifts, the
                # median of their ratios is the steadier figure
                paired = [a / b for a, b in zip(timings["ours_jobs1"], timings[key])]
                result[f"speedup_jobs{jobs}_vs_jobs1_median_paired"] = round(float(np.median(paired)), 2)
    result["ours_cached_s"] = round(best["ours_cached"], 3)
    result["runs_s"] = {k: [round(t, 3) for t in v] for k, v in timings.items()}

    print(f"{'path':<14}{'seconds':>9}{'RTF':>10}{'vs peer':>9}", file=sys.stderr)
    for key, seconds in best.items():
        print(f"{key:<14}{seconds:>9.2f}{seconds / audio_seconds:>10.5f}{best['peer'] / seconds:>8.1f}x",
              file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
