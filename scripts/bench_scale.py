#!/usr/bin/env python
"""Benchmark: one UBM pass in one process vs on a Dask LocalCluster of worker processes.

The corpus is synthetic features written as ``.npy`` files (one per utterance, 39
dimensions, 300 frames each, like MFCC + deltas of 3 s utterances), the model a diagonal
UBM of ``--components`` Gaussians. What is timed is one EM pass of the UBM trainer's
accumulation (`speakergmm.verification.ubm`): every shard of utterances read from its
scratch copy, the float32 E-step, the statistics added in shard order. The first pass, which
also writes those scratch copies, is excluded; the median of ``--repeats`` passes is taken.

- ``one_process``: ``jobs=1`` (in-process, one BLAS thread): the peer.
- ``local_pool``: ``jobs=N`` local worker processes (the single-machine parallel path).
- ``cluster``: the same accumulator on ``LocalCluster(n_workers=N, threads_per_worker=1)``.

A shared virtual machine does not always deliver N cores: the run also measures the
*machine's* parallel throughput, N copies of a fixed single-threaded matrix-product loop in
N processes against one copy alone (N = 2 on an idle 2-core machine, nearer 1 when the host
is busy), and reports the cluster's efficiency against that as well as against N.

Also reported: the statistics of both are identical (bit for bit); the bytes that cross the
network per pass (the pickled task payloads out and statistics back, measured from their
serialised sizes); the peak resident memory of each worker after passes over the corpus
and over a corpus twice as large (flat: workers hold one chunk, not the corpus).

Prints ONE JSON line on stdout (human-readable lines on stderr). Timings are wall-clock and
noisy on a shared machine; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _corpus(folder: Path, n_utts: int, frames: int, dim: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(64, dim))
    paths = []
    for i in range(n_utts):
        labels = rng.integers(0, len(centres), size=frames)
        X = (centres[labels] + rng.normal(size=(frames, dim))).astype(np.float32)
        path = folder / f"utt{i:06d}.npy"
        np.save(path, X)
        paths.append(str(path))
    return paths


def _ubm(n_components: int, dim: int):
    from speakergmm.mixture import GMM

    rng = np.random.default_rng(1)
    return GMM(np.full(n_components, 1.0 / n_components), rng.normal(scale=2.0, size=(n_components, dim)),
               np.ones((n_components, dim)), "diag", dtype=np.float32)


def _time_passes(accumulate, gmm, repeats: int) -> tuple[float, object]:
    stats = accumulate(gmm)  # first pass: writes the scratch copies
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        stats = accumulate(gmm)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), stats


def _matmul_loop(n: int) -> float:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        a = np.random.default_rng(0).normal(size=(2000, 80)).astype(np.float32)
        b = np.random.default_rng(1).normal(size=(80, 256)).astype(np.float32)
        t0 = time.perf_counter()
        for _ in range(n):
            a @ b
        return time.perf_counter() - t0


def _machine_parallel_throughput(n_procs: int, loops: int = 800) -> float:
    """Work done per second by ``n_procs`` processes at once over one process alone."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(n_procs) as pool:
        list(pool.map(_matmul_loop, [10] * n_procs))
        t0 = time.perf_counter()
        _matmul_loop(loops)
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        list(pool.map(_matmul_loop, [loops] * n_procs))
        many = time.perf_counter() - t0
    return n_procs * one / many


def _worker_peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=2000)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--dim", type=int, default=39)
    parser.add_argument("--components", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shard-utterances", type=int, default=None,
                        help="utterances per shard (one task of a pass; default: the UBM trainer's)")
    args = parser.parse_args()
    if args.shard_utterances is None:
        from speakergmm.verification.ubm import SHARD_UTTERANCES

        args.shard_utterances = SHARD_UTTERANCES

    from speakergmm.cluster import open_cluster
    from speakergmm.verification.sources import as_source
    from speakergmm.verification.ubm import CorpusAccumulator

    gmm = _ubm(args.components, args.dim)
    with tempfile.TemporaryDirectory(prefix="speakergmm-bench-scale-") as tmp:
        tmp = Path(tmp)
        paths = _corpus(tmp, 2 * args.utterances, args.frames, args.dim)
        small, large = paths[:args.utterances], paths
        n_frames = args.utterances * args.frames

        def accumulator(utts, pack_dir, client=None):
            src = as_source(utts)
            return CorpusAccumulator(src, src.ids(), 1, "float32", 8192, tmp / pack_dir,
                                     src.fingerprint(src.ids()), client=client,
                                     shard_utterances=args.shard_utterances)

        _log(f"corpus: {args.utterances} utterances, {n_frames} frames x {args.dim}; "
             f"UBM {args.components} diagonal Gaussians; load average {os.getloadavg()[0]:.2f}")
        machine = _machine_parallel_throughput(args.workers)
        _log(f"machine: {args.workers} processes do {machine:.2f}x the work of one")
        acc1 = accumulator(small, "one")
        t_one, stats_one = _time_passes(acc1, gmm, args.repeats)
        acc1.close()
        _log(f"one process: {t_one:.3f} s per pass ({n_frames / t_one / 1e6:.2f} M frames/s)")
        src = as_source(small)
        pool = CorpusAccumulator(src, src.ids(), args.workers, "float32", 8192, tmp / "pool",
                                 src.fingerprint(src.ids()), shard_utterances=args.shard_utterances)
        t_pool, _ = _time_passes(pool, gmm, args.repeats)
        pool.close()
        _log(f"local pool of {args.workers}: {t_pool:.3f} s per pass")

        with open_cluster(f"local:{args.workers}") as client:
            acc = accumulator(small, "cluster", client)
            t_cluster, stats_cluster = _time_passes(acc, gmm, args.repeats)
            rss_small = client.run(_worker_peak_rss_mib)
            acc_large = accumulator(large, "cluster-large", client)
            _time_passes(acc_large, gmm, 1)
            rss_large = client.run(_worker_peak_rss_mib)
            # Bytes per pass: the model goes to every worker once a pass (scattered), the source
            # once a run; each task carries its shard's ids and scratch-file name; one statistics
            # object per shard moves to the worker adding its group, and one comes back.
            model_bytes = len(pickle.dumps(gmm.to_arrays(), protocol=5))
            source_bytes = len(pickle.dumps(acc.source, protocol=5))
            items = sum(len(pickle.dumps((shard, pack, key), protocol=5))
                        for shard, (pack, key) in zip(acc.shards, acc.packs))
            bytes_out = args.workers * model_bytes + items
            bytes_back = len(acc.shards) * len(pickle.dumps(stats_cluster.to_arrays(), protocol=5))
        identical = all(np.array_equal(a, b) for a, b in zip(stats_one.to_arrays().values(),
                                                             stats_cluster.to_arrays().values()))
        speedup = t_one / t_cluster
        efficiency = speedup / args.workers
        _log(f"cluster of {args.workers}: {t_cluster:.3f} s per pass, speed-up {speedup:.2f}x, "
             f"parallel efficiency {efficiency:.2f} ({speedup / machine:.2f} of what the machine "
             f"delivered); statistics identical: {identical}")
        _log(f"once a run: {args.workers} x {source_bytes / 1e6:.2f} MB (the source) to the workers")
        _log(f"per pass: {len(acc.shards)} tasks, {bytes_out / 1e6:.2f} MB out to the workers, {bytes_back / 1e6:.2f} MB of shard statistics summed (at most that between workers)")
        _log(f"worker peak RSS (MiB): {sorted(rss_small.values())} at {args.utterances} utterances, "
             f"{sorted(rss_large.values())} at {2 * args.utterances}")
        print(json.dumps({
            "benchmark": "scale",
            "machine": {"cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
                        "parallel_throughput": round(machine, 3)},
            "corpus": {"utterances": args.utterances, "frames": n_frames, "dim": args.dim},
            "n_components": args.components,
            "shard_utterances": args.shard_utterances,
            "one_process_seconds_per_pass": round(t_one, 4),
            "local_pool_seconds_per_pass": round(t_pool, 4),
            "cluster_workers": args.workers,
            "cluster_seconds_per_pass": round(t_cluster, 4),
            "speedup": round(speedup, 3),
            "parallel_efficiency": round(efficiency, 3),
            "parallel_efficiency_vs_machine": round(speedup / machine, 3),
            "identical_statistics": bool(identical),
            "tasks_per_pass": len(acc.shards),
            "bytes_out_per_pass": int(bytes_out),
            "source_bytes_per_worker_once": int(source_bytes),
            "statistics_bytes_per_pass": int(bytes_back),
            "worker_peak_rss_mib": {"corpus": sorted(round(v, 1) for v in rss_small.values()),
                                    "corpus_x2": sorted(round(v, 1) for v in rss_large.values())},
        }))


if __name__ == "__main__":
    main()
