"""Several workers: ``--strategy multiworker`` with two worker processes on 127.0.0.1.

Each test starts its workers as subprocesses with their own ``TF_CONFIG`` (free ports
chosen here, loopback only) and waits for them with timeouts. Real data (an MNIST
slice), a small MLP, and ``--deterministic``: 640 images at a global batch of 64 are 10
steps an epoch.
"""

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from conftest import ROOT, run_cli

TRAIN = ["train", "--model", "vae", "--dataset", "mnist", "--max-train-examples", 640, "--validation-size", 100, "--batch-size", 64,
         "--latent-dim", 4, "--arch", "mlp", "--hidden-units", 64, "--deterministic"]
EPOCHS = 4
WAIT = 600  # seconds: the bound on any one worker process


def start_workers(n, args, logs):
    """Start ``python cli.py ARGS`` as workers 0 ... n-1 of one cluster on 127.0.0.1."""
    from tfvae.training.multiworker import local_tf_configs

    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for i, tf_config in enumerate(local_tf_configs(n)):
        out = open(logs / f"worker{i}.log", "w")
        procs.append(subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *map(str, args)], cwd=ROOT,
                                      env={**os.environ, "TF_CONFIG": tf_config}, stdout=out, stderr=subprocess.STDOUT))
    return procs


def finish(procs, logs):
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=WAIT))
        except subprocess.TimeoutExpired:
            p.kill()
            codes.append(p.wait())
    assert codes == [0] * len(procs), [(logs / f"worker{i}.log").read_text()[-1500:] for i in range(len(procs))]


def weights(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def metrics(run):
    rows = (run / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    return {k: np.array([float(r.split(",")[header.index(k)]) for r in rows[1:]]) for k in header}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tfds_dir):
    """The same run on one worker and on two (40 steps each)."""
    root = tmp_path_factory.mktemp("multiworker")
    out = {}
    for n in (1, 2):
        procs = start_workers(n, [*TRAIN, "--epochs", EPOCHS, "--strategy", "multiworker",
                                  "--run-dir", root / f"w{n}"], root / f"logs{n}")
        finish(procs, root / f"logs{n}")
        out[n] = root / f"w{n}"
    return out


@pytest.mark.slow
def test_two_workers_follow_one_workers_trajectory_and_only_the_chief_writes(runs):
    one, two = metrics(runs[1]), metrics(runs[2])
    assert len(one["epoch"]) == len(two["epoch"]) == EPOCHS
    for key in ("loss", "neg_elbo", "kl", "val_neg_elbo", "val_loss"):
        np.testing.assert_allclose(two[key], one[key], rtol=1e-4, err_msg=key)
    a, b = weights(runs[1] / "checkpoints" / "last.weights.h5"), weights(runs[2] / "checkpoints" / "last.weights.h5")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-3, atol=1e-5, err_msg=name)
    summary = json.loads((runs[2] / "summary.json").read_text())
    assert summary["epochs"] == EPOCHS
    # The second worker wrote nothing: one run directory, no stray files beside it.
    assert sorted(p.name for p in runs[2].parent.iterdir() if p.name.startswith("w")) == ["w1", "w2"]


@pytest.mark.slow
def test_one_multiworker_worker_matches_the_single_machine_fit_path(runs, tmp_path):
    """The custom loop and Keras fit call the same train step: same losses."""
    result = run_cli(*TRAIN, "--epochs", 2, "--run-dir", tmp_path / "fit")
    assert result.returncode == 0, result.stderr[-2000:]
    fit, loop = metrics(tmp_path / "fit"), metrics(runs[1])
    for key in ("loss", "val_neg_elbo"):
        np.testing.assert_allclose(loop[key][:2], fit[key], rtol=1e-4, err_msg=key)


@pytest.mark.slow
def test_a_killed_worker_then_a_restart_of_both_resumes_every_epoch_once(runs, tmp_path):
    run = tmp_path / "run"
    procs = start_workers(2, [*TRAIN, "--epochs", EPOCHS, "--strategy", "multiworker", "--run-dir", run],
                          tmp_path / "first")
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:  # wait for the first epoch's row
        if (run / "metrics.csv").is_file() and len((run / "metrics.csv").read_text().splitlines()) >= 2:
            break
        assert all(p.poll() is None for p in procs), (tmp_path / "first" / "worker0.log").read_text()[-1500:]
        time.sleep(0.05)
    # Freeze worker 1, then kill it: the chief is then certainly stuck mid-run (its next
    # all-reduce needs worker 1), and worker 1 dies without a word.
    procs[1].send_signal(signal.SIGSTOP)
    procs[1].send_signal(signal.SIGKILL)
    procs[1].wait(timeout=60)
    try:
        code = procs[0].wait(timeout=180)  # the chief notices the missed heartbeats and stops
        log = (tmp_path / "first" / "worker0.log").read_text()
        assert code == 2 and "another worker stopped answering" in log and "--resume" in log, log[-1500:]
    except subprocess.TimeoutExpired:  # (or it is killed too, as a scheduler would)
        procs[0].kill()
        procs[0].wait()
    assert not (run / "summary.json").exists() and len(metrics(run)["epoch"]) < EPOCHS
    procs = start_workers(2, ["train", "--resume", run, "--strategy", "multiworker", "--deterministic"],
                          tmp_path / "again")
    finish(procs, tmp_path / "again")
    m = metrics(run)
    assert m["epoch"].tolist() == list(range(EPOCHS))  # each epoch once
    a, b = weights(runs[2] / "checkpoints" / "last.weights.h5"), weights(run / "checkpoints" / "last.weights.h5")
    for name in a:
        np.testing.assert_array_equal(b[name], a[name], err_msg=name)  # bit-identical to the uninterrupted run


@pytest.mark.slow
def test_evaluate_on_two_workers_equals_one(runs, tmp_path):
    args = ["evaluate", runs[1], "-k", 20, "--max-examples", 300, "--chunk", 400]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    one = json.loads((runs[1] / "eval.json").read_text())
    procs = start_workers(2, [*args, "--strategy", "multiworker"], tmp_path / "eval")
    finish(procs, tmp_path / "eval")
    two = json.loads((runs[1] / "eval.json").read_text())
    assert two["protocol"]["workers"] == 2 and one["protocol"]["workers"] == 1
    for key in ("nll", "neg_elbo", "reconstruction", "kl"):
        assert abs(two["metrics"][key] - one["metrics"][key]) < 1e-6, key
    assert two["metrics"]["active_units"] == one["metrics"]["active_units"]


def test_a_bad_tf_config_is_one_line(tmp_path):
    for config, message in [("{not json", "TF_CONFIG is not valid JSON"),
                            ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}',
                             "is not one of the cluster's workers"),
                            ('{"cluster": {"worker": "127.0.0.1:1"}}', "cluster.worker must be a list")]:
        result = run_cli("train", "--model", "vae", "--strategy", "multiworker", "--run-dir", tmp_path / "r", env={"TF_CONFIG": config})
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
    for config, message in [('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": "worker 0"}', "task must be an object"),
                            ('{"cluster": {"worker": ["127.0.0.1:1"], "chief": "127.0.0.1:2"}, '
                             '"task": {"type": "worker", "index": 0}}', "cluster.chief must be a list")]:
        result = run_cli("train", "--model", "vae", "--strategy", "multiworker", "--run-dir", tmp_path / "r", env={"TF_CONFIG": config})
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and not (tmp_path / "r").exists()


def test_workers_started_with_different_options_stop_before_any_folder_is_made(tmp_path, tfds_dir):
    """One all-reduce of the configuration's fingerprint: both workers name the option that
    differs (here --seed) and stop before the first step; no run folder blocks a --resume."""
    from tfvae.training.multiworker import local_tf_configs

    run = tmp_path / "run"
    procs, logs = [], tmp_path / "logs"
    logs.mkdir()
    base = [*TRAIN, "--epochs", 1, "--strategy", "multiworker", "--run-dir", run]
    for i, tf_config in enumerate(local_tf_configs(2)):
        out = open(logs / f"worker{i}.log", "w")
        procs.append(subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *map(str, base), "--seed", str(i)],
                                      cwd=ROOT, env={**os.environ, "TF_CONFIG": tf_config}, stdout=out,
                                      stderr=subprocess.STDOUT))
    codes = [p.wait(timeout=WAIT) for p in procs]
    texts = [(logs / f"worker{i}.log").read_text() for i in range(2)]
    assert codes == [2, 2], texts
    for i, text in enumerate(texts):
        last = text.strip().splitlines()[-1]
        assert last.startswith("error: ") and "disagree on --seed" in last and f"this worker: {i}" in last, text
        assert "Traceback" not in text
    assert not run.exists()


def test_a_worker_whose_peers_never_come_gives_up_in_one_line(tmp_path):
    """Only worker 0 of two starts: it says what it waits for, and after --worker-timeout ends
    with one line and a non-zero exit, leaving nothing behind."""
    from tfvae.training.multiworker import local_tf_configs

    config = local_tf_configs(2)[0]
    peer = json.loads(config)["cluster"]["worker"][1]
    start = time.monotonic()
    result = run_cli("train", "--model", "vae", "--dataset", "mnist", "--strategy", "multiworker", "--worker-timeout", 3,
                     "--run-dir", tmp_path / "r", env={"TF_CONFIG": config}, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and time.monotonic() - start < 100
    assert lines[0].startswith("waiting for 1 other worker(s)") and peer in lines[0], result.stderr
    assert lines[-1].startswith("error: ") and "did not come within --worker-timeout 3 s" in lines[-1], result.stderr
    assert len(lines) == 2 and not (tmp_path / "r").exists()


def test_a_busy_worker_address_is_named_as_such(tmp_path):
    import socket

    from tfvae.training.multiworker import local_tf_configs

    config = json.loads(local_tf_configs(2)[0])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config["cluster"]["worker"][0] = f"127.0.0.1:{port}"
        result = run_cli("train", "--model", "vae", "--strategy", "multiworker", "--run-dir", tmp_path / "r",
                         env={"TF_CONFIG": json.dumps(config)}, timeout=120)
    assert result.returncode == 2 and f"127.0.0.1:{port} is busy" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()
