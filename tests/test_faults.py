"""Real faults, not mocks: SIGKILL during training and export, a diverging loss,
bit-identical reruns, and MirroredStrategy against one device."""

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from conftest import ROOT, run_cli
from test_cli import assert_one_line_error

pytestmark = pytest.mark.slow
SLICE = ["--dataset", "mnist", "--max-train-examples", 8000, "--validation-size", 1000, "--batch-size", 100,
         "--latent-dim", 8, "--seed", 3]


def start_cli(*args):
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)


def wait_for(predicate, timeout=240, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def metric_rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def weights(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def test_sigkill_mid_epoch_then_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, tfds_dir):
    """--deterministic and per-image keys: the resumed run's weights equal, bit for bit,
    those of a run that was never interrupted (so two --deterministic runs are identical;
    no separate test trains two more runs for that)."""
    epochs = 4
    args = [*SLICE[:3], 4000, *SLICE[4:], "--deterministic", "--epochs", epochs]
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = start_cli("train", "--model", "vae", *args, "--run-dir", killed)
    metadata = killed / "backup" / "training_metadata.json"

    def after_a_backup():
        try:
            return json.loads(metadata.read_text())["epoch"] >= 1
        except (OSError, ValueError, KeyError):
            return proc.poll() is not None

    wait_for(after_a_backup, what="the first epoch's backup")
    time.sleep(0.3)  # into the next epoch
    assert proc.poll() is None, "training finished before it could be killed: " + proc.stderr.read()[-500:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads(metadata.read_text())["epoch"]
    assert done < epochs and not (killed / "summary.json").exists()

    result = run_cli("train", "--resume", killed, "--deterministic")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = metric_rows(killed)
    assert [int(r["epoch"]) for r in rows] == list(range(epochs)), "each epoch exactly once"
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["resumed_from_epoch"] == done
    assert not (killed / "backup").exists()

    result = run_cli("train", "--model", "vae", *args, "--run-dir", clean)
    assert result.returncode == 0, result.stderr[-2000:]
    resumed, uninterrupted = (weights(d / "checkpoints" / "last.weights.h5") for d in (killed, clean))
    assert resumed.keys() == uninterrupted.keys() and len(resumed) > 10
    differing = [k for k in resumed if not np.array_equal(resumed[k], uninterrupted[k])]
    print(f"killed after epoch {done}, resumed: {len(resumed) - len(differing)} of {len(resumed)} weight arrays "
          f"bit-identical to the uninterrupted run")
    assert not differing, differing[:5]
    train_loss = [(a["loss"], b["loss"]) for a, b in zip(rows, metric_rows(clean))]
    assert all(a == b for a, b in train_loss), train_loss

    assert_one_line_error(run_cli("train", "--resume", clean), "already finished")


def test_sigkill_during_export_leaves_no_half_written_version(run_dir, tmp_path):
    out = tmp_path / "exported"
    proc = start_cli("export", run_dir, "--name", "m", "--out", out, "--tflite", "--quantize", "int8",
                     "--quantize", "float16")
    wait_for(lambda: any((out / "m").glob(".staging-*/decoder/saved_model.pb")) or proc.poll() is not None,
             what="the export to start writing")
    time.sleep(0.5)
    assert proc.poll() is None, "the export finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The kill landed mid-write: the staging folder is there and no version was published.
    assert any((out / "m").glob(".staging-*")), "no staging folder: the kill did not land mid-export"
    assert not any((out / "m").glob("tflite/*")), "a version was published before the kill"
    for component, marker in (("decoder", "saved_model.pb"), ("encoder", "saved_model.pb"),
                              ("tflite", "model_card.json")):
        for version in (out / "m" / component).glob("*") if (out / "m" / component).exists() else []:
            assert (version / marker).is_file(), f"half-written {version}"
    result = run_cli("export", run_dir, "--name", "m", "--out", out, "--tflite")
    assert result.returncode == 0, result.stderr[-2000:]
    assert any((out / "m" / "tflite").glob("*/decoder.tflite"))
    assert not any((out / "m").glob(".staging-*")), "the next export clears the dead one's staging folder"


def test_diverging_loss_stops_with_a_clear_message(tmp_path, tfds_dir):
    run_dir = tmp_path / "nan"
    result = run_cli("train", "--model", "vae", *SLICE, "--epochs", 3, "--learning-rate", "1e6", "--run-dir", run_dir)
    assert result.returncode == 3
    assert_one_line_error(result, "NaN or Inf", "epoch 1, step", "--learning-rate")
    # No checkpoint was written from non-finite weights; the run's config is intact.
    for path in (run_dir / "checkpoints").glob("*.h5"):
        assert all(np.all(np.isfinite(v)) for v in weights(path).values() if v.dtype.kind == "f")
    json.loads((run_dir / "config.json").read_text())


MIRRORED = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, {root!r})
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    from tfvae.config import RunConfig
    from tfvae.data import train_pipeline
    from tfvae.models import build_model

    cfg = RunConfig().resolved()
    cfg.model.model = "vae"
    cfg.model.image_shape, cfg.model.latent_dim, cfg.model.hidden_units = [28, 28, 1], 4, [32]
    cfg.model.conv_filters = [8, 16]
    images = (np.random.default_rng(0).random((256, 28, 28, 1)) * 255).astype(np.uint8)
    out = {{}}
    for name in ("default", "mirrored"):
        strategy = (tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]) if name == "mirrored"
                    else tf.distribute.get_strategy())
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = build_model(cfg.model, seed=0)
            model.compile(optimizer=keras.optimizers.Adam(1e-3))
        losses = []
        record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: losses.append(float(logs["loss"])))
        ds = train_pipeline(images, 64, "dynamic", 0, noise_shape=(1, 4))
        model.fit(ds, steps_per_epoch=4, epochs=2, verbose=0, shuffle=False, callbacks=[record])
        out[name] = {{"losses": losses, "replicas": strategy.num_replicas_in_sync}}
    print(json.dumps(out))
""")


def test_mirrored_on_two_logical_cpus_matches_one_device():
    result = subprocess.run([sys.executable, "-c", MIRRORED.format(root=str(ROOT))], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["mirrored"]["replicas"] == 2 and out["default"]["replicas"] == 1
    default, mirrored = np.array(out["default"]["losses"]), np.array(out["mirrored"]["losses"])
    print("per-step running loss, default vs mirrored:", default.round(4).tolist(), mirrored.round(4).tolist())
    assert len(default) == len(mirrored) == 8
    np.testing.assert_allclose(mirrored, default, rtol=1e-4)


@pytest.mark.parametrize("signum,status,name", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")])
def test_ctrl_c_or_sigterm_stops_after_the_epoch_backup_and_resume_finishes(tmp_path, tfds_dir, signum, status, name):
    """Ctrl-C, or a scheduler's SIGTERM (Kubernetes, Slurm pre-emption), loses nothing: the
    epoch's backup is written, the exit status is 128 + the signal, the last line says how
    to resume, and the resumed run finishes every epoch once."""
    run_dir = tmp_path / "interrupted"
    proc = start_cli("train", "--model", "vae", *SLICE, "--epochs", 4, "--run-dir", run_dir)
    wait_for(lambda: (run_dir / "backup" / "training_metadata.json").exists() or proc.poll() is not None,
             what="the first epoch's backup")
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == status, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    assert "Traceback" not in stderr and "--resume" in last and name in last, last
    done = json.loads((run_dir / "backup" / "training_metadata.json").read_text())["epoch"]
    assert 1 <= done < 4 and len(metric_rows(run_dir)) == done
    assert (run_dir / "checkpoints" / "last.weights.h5").is_file()
    # The pictures of the epochs done so far are there, whole (written atomically every epoch).
    for figure in ("samples.png", "reconstructions.png", "loss.png"):
        assert (run_dir / "figures" / figure).read_bytes()[:4] == b"\x89PNG", figure
    assert not list((run_dir / "figures").glob(".*tmp*"))
    result = run_cli("train", "--resume", run_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [int(r["epoch"]) for r in metric_rows(run_dir)] == [0, 1, 2, 3]


def test_divergence_after_good_epochs_keeps_the_last_good_checkpoint(tmp_path, tfds_dir):
    run_dir = tmp_path / "diverge"
    proc = start_cli("train", "--model", "vae", *SLICE, "--epochs", 4, "--run-dir", run_dir)
    wait_for(lambda: (run_dir / "backup" / "training_metadata.json").exists() or proc.poll() is not None,
             what="the first epoch's backup")
    proc.send_signal(signal.SIGINT)  # stop cleanly after a good epoch
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    good = weights(run_dir / "checkpoints" / "last.weights.h5")
    result = run_cli("train", "--resume", run_dir, "--learning-rate", "1e6")  # a real divergence
    assert result.returncode == 3
    assert_one_line_error(result, "NaN or Inf", "--learning-rate 1e+06")
    config = json.loads((run_dir / "config.json").read_text())
    assert config["train"]["learning_rate"] == 1e6 and config["meta"]["learning_rate_changes"][0]["new"] == 1e6
    after = weights(run_dir / "checkpoints" / "last.weights.h5")
    assert all(np.array_equal(good[k], after[k]) for k in good)  # the last good weights are untouched
    result = run_cli("evaluate", run_dir, "--iw-samples", 5, "--max-examples", 50)
    assert result.returncode == 0, result.stderr[-2000:]
    assert np.isfinite(json.loads((run_dir / "eval.json").read_text())["metrics"]["nll"])
    assert_one_line_error(run_cli("train", "--resume", run_dir, "--latent-dim", 3), "--latent-dim")


def test_two_exports_of_one_name_never_collide(run_dir, tmp_path):
    """Started together, two exports of the same name take versions 1 and 2 (the second waits
    for the first's lock), and both versions are complete."""
    out = tmp_path / "exported"
    procs = [start_cli("export", run_dir, "--name", "m", "--out", out) for _ in range(2)]
    for proc in procs:
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-2000:]
    for component, marker in (("decoder", "saved_model.pb"), ("encoder", "saved_model.pb")):
        versions = sorted(p.name for p in (out / "m" / component).iterdir())
        assert versions == ["1", "2"], versions
        assert all((out / "m" / component / v / marker).is_file() for v in versions)
    cards = [json.loads((out / "m" / "tflite" / v / "model_card.json").read_text())["version"] for v in ("1", "2")]
    assert cards == [1, 2]
