"""Work on a Dask cluster gives the same results as one process (a LocalCluster of 2 processes)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from speakergmm.cluster import ClusterError, as_executor, executor_workers, open_cluster, parse_scheduler  # noqa: E402
from speakergmm.mixture import GMM  # noqa: E402
from speakergmm.mixture.distributed import (  # noqa: E402
    ChunkListAccumulator,
    DaskArrayAccumulator,
    is_dask_array,
    tree_sum,
)
from speakergmm.verification import enroll_speakers, score_trials, train_ubm  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with open_cluster("local:2") as c:
        yield c


def _same_bits(a, b) -> bool:
    A, B = a.to_arrays(), b.to_arrays()
    return A.keys() == B.keys() and all(np.array_equal(A[k], B[k]) for k in A)


def _data(n=12_000, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) + rng.integers(0, 3, size=(n, 1)) * 4.0
    gmm = GMM(np.full(4, 0.25), rng.normal(scale=3.0, size=(4, d)), np.ones((4, d)), "diag")
    return X, gmm


class SlowLoader:
    """A picklable zero-argument loader that takes its time (to kill a worker mid-pass)."""

    def __init__(self, path: str, delay: float):
        self.path, self.delay = path, delay

    def __call__(self) -> np.ndarray:
        time.sleep(self.delay)
        return np.load(self.path)


# --------------------------------------------------------------------------- scheduler
def test_parse_scheduler_forms_and_errors():
    assert parse_scheduler("local:3") == ("local", 3)
    assert parse_scheduler("tcp://10.0.0.1:8786") == ("address", "tcp://10.0.0.1:8786")
    for bad in ("", "local:0", "local:x"):
        with pytest.raises(ClusterError, match="scheduler"):
            parse_scheduler(bad)


def test_unreachable_scheduler_is_named():
    with pytest.raises(ClusterError, match=r"cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        with open_cluster("tcp://127.0.0.1:9", timeout=1.0):
            pass


def test_executor_from_client(client):
    executor = as_executor(client)
    assert executor_workers(executor) == 2
    assert list(executor.map(abs, [-1, -2, 3])) == [1, 2, 3]
    assert as_executor(None) is None
    with pytest.raises(TypeError, match="client must be"):
        as_executor(object())


def test_workers_run_one_blas_thread(client):
    def blas_threads():
        from threadpoolctl import threadpool_info

        return max((lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"), default=1)

    assert set(client.run(blas_threads).values()) == {1}
    # glibc keeps the E-step's large temporaries in the heap (see speakergmm.cluster)
    envs = client.run(lambda: (os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("MALLOC_MMAP_THRESHOLD_")))
    assert set(envs.values()) == {(str(128 * 2**20), str(64 * 2**20))}


# --------------------------------------------------------------------------- statistics
def test_dask_array_statistics_equal_in_memory_and_do_not_depend_on_the_cluster(client):
    X, gmm = _data()
    reference = gmm.e_step(X)[1]
    Xd = da.from_array(X, chunks=(2500, 5))
    local = DaskArrayAccumulator(Xd)(gmm)
    on_cluster = DaskArrayAccumulator(Xd, client=client)(gmm)
    assert _same_bits(local, on_cluster)  # same shards, same tree: same bits
    np.testing.assert_allclose(local.zeroth, reference.zeroth, rtol=1e-12)
    np.testing.assert_allclose(local.first, reference.first, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(local.second, reference.second, rtol=1e-12)
    assert local.log_likelihood == pytest.approx(reference.log_likelihood, rel=1e-13)
    # The same shards summed here in the same tree: the same bits again.
    blocks = [gmm.e_step(X[i:i + 2500])[1] for i in range(0, X.shape[0], 2500)]
    assert _same_bits(tree_sum(blocks), local)
    assert is_dask_array(Xd) and not is_dask_array(X)


def test_split_every_and_sample_weight(client):
    X, gmm = _data(n=5000)
    w = np.random.default_rng(1).uniform(0.1, 2.0, size=X.shape[0])
    Xd = da.from_array(X, chunks=(700, 5))
    a = DaskArrayAccumulator(Xd, sample_weight=w, client=client, split_every=2)(gmm)
    b = DaskArrayAccumulator(Xd, sample_weight=da.from_array(w, chunks=1000), client=client,
                             split_every=16)(gmm)
    ref = gmm.e_step(X, w)[1]
    for s in (a, b):
        np.testing.assert_allclose(s.zeroth, ref.zeroth, rtol=1e-12)
        assert s.n_frames == pytest.approx(w.sum(), rel=1e-13)
    with pytest.raises(ValueError, match="split_every"):
        DaskArrayAccumulator(Xd, split_every=1)
    with pytest.raises(ValueError, match="sample_weight"):
        DaskArrayAccumulator(Xd, sample_weight=np.ones(3))


def test_chunk_list_of_paths_is_read_by_the_workers(client, tmp_path):
    X, gmm = _data(n=6000)
    paths = []
    for i in range(0, 6000, 1000):
        paths.append(str(tmp_path / f"part{i}.npy"))
        np.save(paths[-1], X[i:i + 1000])
    from_paths = ChunkListAccumulator(paths, client=client)(gmm)
    from_arrays = ChunkListAccumulator([X[i:i + 1000] for i in range(0, 6000, 1000)], client=client)(gmm)
    assert _same_bits(from_paths, from_arrays)
    missing = ChunkListAccumulator(paths + [str(tmp_path / "absent.npy")], client=client)
    with pytest.raises(OSError, match="absent.npy"):
        missing(gmm)
    with pytest.raises(TypeError, match="must be a list"):
        ChunkListAccumulator(lambda: iter(paths), client=client)


def test_a_worker_killed_mid_pass_costs_a_retry_not_the_result(client, tmp_path):
    X, gmm = _data(n=8000)
    paths = []
    for i in range(0, 8000, 500):
        paths.append(str(tmp_path / f"p{i}.npy"))
        np.save(paths[-1], X[i:i + 500])
    expected = ChunkListAccumulator(paths, client=client)(gmm)
    accumulate = ChunkListAccumulator([SlowLoader(p, 0.15) for p in paths], client=client)
    pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]
    killer = threading.Timer(0.5, os.kill, args=(victim, signal.SIGKILL))
    killer.start()
    try:
        got = accumulate(gmm)
    finally:
        killer.cancel()
    assert _same_bits(got, expected)
    client.wait_for_workers(2, timeout=60)
    assert victim not in client.run(os.getpid).values()  # the nanny started a new worker


# --------------------------------------------------------------------------- verification stages
def test_ubm_on_the_cluster_equals_one_process(client, tmp_path):
    rng = np.random.default_rng(5)
    centres = rng.normal(scale=3.0, size=(5, 4))
    utts = {}
    for i in range(140):  # five shards
        labels = rng.integers(0, 5, size=int(rng.integers(30, 80)))
        path = tmp_path / f"utt{i:03d}.npy"
        np.save(path, centres[labels] + rng.normal(size=(labels.size, 4)))
        utts[f"utt{i:03d}"] = str(path)
    paths = list(utts.values())
    kw = dict(iter_per_split=2, final_iter=2, dtype="float32", frames_per_component=20, shard_utterances=32)
    local = train_ubm(paths, 8, jobs=1, **kw)
    remote = train_ubm(paths, 8, client=client, checkpoint=tmp_path / "ubm.ckpt", **kw)
    for name in ("weights", "means", "covariances"):
        assert np.array_equal(getattr(local.gmm, name), getattr(remote.gmm, name)), name
    assert local.history == remote.history


def test_enrolment_and_scoring_on_the_cluster_equal_local(client, tmp_path):
    from speakergmm.verification import VerificationError

    rng = np.random.default_rng(3)
    ubm = GMM(np.full(4, 0.25), rng.normal(scale=3.0, size=(4, 3)), np.ones((4, 3)), "diag")
    data = {}
    for i in range(12):
        path = tmp_path / f"u{i}.npy"
        np.save(path, ubm.sample(200, random_state=i)[0] + rng.normal(scale=0.3, size=3))
        data[f"u{i}"] = str(path)
    spk2utt = {f"s{j}": [data[f"u{2 * j}"], data[f"u{2 * j + 1}"]] for j in range(4)}
    paths = list(data.values())
    local = enroll_speakers(ubm, paths, spk2utt, jobs=1)
    remote = enroll_speakers(ubm, paths, spk2utt, client=client)
    assert local.speaker_ids == remote.speaker_ids
    assert np.array_equal(local.means, remote.means)
    trials = [(s, data[f"u{i}"]) for s in spk2utt for i in range(8, 12)]
    assert np.array_equal(score_trials(ubm, local, paths, trials, jobs=1),
                          score_trials(ubm, remote, paths, trials, client=client))
    # In-memory arrays would travel through the scheduler: refused, saying why.
    arrays = {k: np.load(v) for k, v in data.items()}
    with pytest.raises(VerificationError, match="paths the workers can see"):
        enroll_speakers(ubm, arrays, {"s0": ["u0"]}, client=client)
    with pytest.raises(VerificationError, match="paths the workers can see"):
        train_ubm(arrays, 2, client=client)


def test_a_run_interrupted_on_the_cluster_resumes_from_its_checkpoint_anywhere(client, tmp_path):
    rng = np.random.default_rng(7)
    paths = []
    for i in range(70):
        paths.append(str(tmp_path / f"x{i}.npy"))
        np.save(paths[-1], rng.normal(size=(int(rng.integers(20, 60)), 3)) + rng.integers(0, 3) * 3.0)
    kw = dict(iter_per_split=2, final_iter=2, dtype="float64", shard_utterances=16)
    whole = train_ubm(paths, 4, jobs=1, **kw)
    ckpt = tmp_path / "ubm.ckpt"
    first = train_ubm(paths, 4, client=client, checkpoint=ckpt, stop_after=3, **kw)
    assert first.gmm.n_components == 2
    resumed = train_ubm(paths, 4, jobs=1, checkpoint=ckpt, **kw)   # the client is gone: go on locally
    assert resumed.resumed_from == 3
    assert np.array_equal(resumed.gmm.means, whole.gmm.means)
    assert resumed.history == whole.history


def test_feature_extraction_on_the_cluster_equals_local(client, fsdd, tmp_path):
    from speakergmm.corpus import DataDir
    from speakergmm.features import FeatureConfig, FeatureStore, extract_data_dir

    wavs = sorted(Path(fsdd).glob("*_jackson_*.wav"))[:24]
    data = DataDir(wav={p.stem: str(p) for p in wavs}, utt2spk={p.stem: "jackson" for p in wavs})
    config = FeatureConfig(sample_rate=8000)
    local = extract_data_dir(data, tmp_path / "local", config, jobs=1)
    remote = extract_data_dir(data, tmp_path / "remote", config, client=client, chunk_size=5)
    assert local.n_extracted == remote.n_extracted == len(wavs)
    a, b = FeatureStore(tmp_path / "local"), FeatureStore(tmp_path / "remote")
    for utt in a.utterances:
        assert np.array_equal(a[utt], b[utt])


# --------------------------------------------------------------------------- the estimator
@pytest.mark.parametrize("init_params", ["kmeans", "split"])
def test_gaussian_mixture_fit_on_a_dask_array_equals_in_memory(client, init_params):
    from speakergmm import GaussianMixture

    X, _ = _data(n=6000, d=4)
    w = np.random.default_rng(2).uniform(0.5, 1.5, size=X.shape[0])
    kw = dict(n_components=4, covariance_type="diag", init_params=init_params, random_state=0,
              max_iter=200, tol=1e-4)
    memory = GaussianMixture(**kw).fit(X, sample_weight=w)
    with distributed.Client(client.scheduler.address, set_as_default=True) as default:
        assert default is not None
        lazy = GaussianMixture(**kw).fit(da.from_array(X, chunks=(1100, 4)), sample_weight=w)
    assert lazy.n_iter_ == memory.n_iter_
    np.testing.assert_allclose(lazy.means_, memory.means_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(lazy.covariances_, memory.covariances_, rtol=1e-9)
    np.testing.assert_allclose(lazy.weights_, memory.weights_, rtol=1e-9)
    assert lazy.lower_bound_ == pytest.approx(memory.lower_bound_, rel=1e-11)


def test_fit_chunks_on_the_cluster_reads_files_on_the_workers(client, tmp_path):
    from speakergmm import GaussianMixture

    X, _ = _data(n=6000, d=4)
    paths = []
    for i in range(0, 6000, 800):
        paths.append(str(tmp_path / f"c{i}.npy"))
        np.save(paths[-1], X[i:i + 800])
    kw = dict(n_components=4, covariance_type="diag", init_params="split", max_iter=200, tol=1e-4)
    local = GaussianMixture(**kw).fit_chunks([X[i:i + 800] for i in range(0, 6000, 800)])
    remote = GaussianMixture(**kw).fit_chunks(paths, client=client, split_every=3)
    np.testing.assert_allclose(remote.means_, local.means_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(remote.covariances_, local.covariances_, rtol=1e-9)
    assert remote.n_iter_ == local.n_iter_


# --------------------------------------------------------------------------- the command line
def test_verify_with_a_scheduler_equals_a_local_run(tmp_path, capsys):
    from speakergmm.cli import main
    from speakergmm.verification import SpeakerModels, load_ubm

    shipped = Path(__file__).resolve().parents[1] / "data" / "fsdd"
    if not (shipped / "train" / "wav.scp").is_file():
        pytest.skip(f"the shipped FSDD subset is not at {shipped}")
    common = ["verify", "--ubm-data", shipped / "train", "--enroll-data", shipped / "train",
              "--test-data", shipped / "test", "--trials", shipped / "trials", "-k", "8",
              "--final-iter", "3", "--iter-per-split", "2", "-q"]
    local, remote = tmp_path / "local", tmp_path / "remote"
    assert main([str(a) for a in [*common, "--out", local, "--jobs", "2"]]) == 0, capsys.readouterr().err
    assert main([str(a) for a in [*common, "--out", remote, "--scheduler", "local:2"]]) == 0, \
        capsys.readouterr().err
    ubm_a, ubm_b = load_ubm(local / "ubm.npz")[0], load_ubm(remote / "ubm.npz")[0]
    assert np.array_equal(ubm_a.means, ubm_b.means) and np.array_equal(ubm_a.covariances, ubm_b.covariances)
    assert np.array_equal(SpeakerModels.load(local / "speakers.npz").means,
                          SpeakerModels.load(remote / "speakers.npz").means)
    assert (local / "scores.txt").read_text() == (remote / "scores.txt").read_text()


def test_an_unreachable_scheduler_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch):
    from speakergmm.cli import main

    monkeypatch.setenv("SPEAKERGMM_SCHEDULER_TIMEOUT", "1")
    data = tmp_path / "data"
    data.mkdir()
    status = main(["features", str(data), str(tmp_path / "feats"), "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert status == 1
    assert "speakergmm features: --scheduler: cannot reach the Dask scheduler at 'tcp://127.0.0.1:9' within 1 s" in err
    assert "Traceback" not in err


def test_without_a_scheduler_dask_is_not_imported(tmp_path):
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from speakergmm import GaussianMixture\n"
            "import speakergmm.cli\n"
            "from speakergmm.verification import train_ubm\n"
            "GaussianMixture(2, covariance_type='diag').fit(np.random.default_rng(0).normal(size=(200, 2)))\n"
            "train_ubm([np.random.default_rng(1).normal(size=(300, 2))], 2, iter_per_split=1, final_iter=1)\n"
            "print(sorted(m for m in sys.modules if m == 'dask' or m.startswith(('dask.', 'distributed'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_ivector_statistics_on_the_cluster_equal_local(client, tmp_path):
    from speakergmm.verification.ivector import utterance_stats

    rng = np.random.default_rng(11)
    ubm = GMM(np.full(4, 0.25), rng.normal(scale=3.0, size=(4, 3)), np.ones((4, 3)), "diag")
    paths = []
    for i in range(20):
        paths.append(str(tmp_path / f"s{i}.npy"))
        np.save(paths[-1], ubm.sample(int(rng.integers(30, 90)), random_state=i)[0])
    local = utterance_stats(ubm, paths, jobs=1)
    remote = utterance_stats(ubm, paths, client=client)
    assert local.utterance_ids == remote.utterance_ids
    for name in ("zeroth", "first", "quadratic", "n_frames"):
        assert np.array_equal(getattr(local, name), getattr(remote, name)), name
