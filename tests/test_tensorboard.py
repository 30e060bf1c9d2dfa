"""TensorBoard: a short run's logs read back through the real TensorBoard server's HTTP data
API (bound to 127.0.0.1, stopped at the end) equal metrics.csv, and the panels the README
names are there."""

import csv
import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

pytestmark = pytest.mark.slow


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(base, path, **query):
    url = f"{base}{path}" + ("?" + urllib.parse.urlencode(query) if query else "")
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture()
def tensorboard_server(run_dir):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(run_dir / "tensorboard"),
                             "--host", "127.0.0.1", "--port", str(port), "--load_fast", "false",
                             "--reload_interval", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        tags = {}
        while time.monotonic() < deadline:  # bounded: the server starts, then loads the event files
            if proc.poll() is not None:
                pytest.fail("tensorboard exited: " + proc.stdout.read()[-2000:])
            try:
                tags = get_json(base, "/data/plugin/scalars/tags")
                if {"train", "validation", "model"} <= set(tags):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert {"train", "validation", "model"} <= set(tags), tags
        yield base, tags
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_tensorboard_server_shows_the_runs_metrics(tensorboard_server, run_dir):
    base, tags = tensorboard_server
    for tag in ("epoch_neg_elbo", "epoch_reconstruction", "epoch_kl", "epoch_kl_weight", "epoch_learning_rate"):
        assert tag in tags["train"], (tag, sorted(tags["train"]))
    for tag in ("epoch_neg_elbo", "epoch_reconstruction", "epoch_kl"):
        assert tag in tags["validation"], (tag, sorted(tags["validation"]))
    with open(run_dir / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    logged = get_json(base, "/data/plugin/scalars/scalars", run="validation", tag="epoch_neg_elbo")
    assert [step for _, step, _ in logged] == [int(r["epoch"]) for r in rows]
    for (_, step, value), row in zip(logged, rows):
        print(f"epoch {step}: TensorBoard validation −ELBO {value:.6f}, metrics.csv {float(row['val_neg_elbo']):.6f}")
        assert value == pytest.approx(float(row["val_neg_elbo"]), rel=1e-6)  # float32 in the event file
    latent_dim = json.loads((run_dir / "config.json").read_text())["model"]["latent_dim"]
    assert sum(t.startswith("kl_per_dimension/z") for t in tags["model"]) == latent_dim
    kl = [get_json(base, "/data/plugin/scalars/scalars", run="model", tag=f"kl_per_dimension/z{d:03d}")[-1][2]
          for d in range(latent_dim)]
    assert min(kl) >= 0
    histograms = get_json(base, "/data/plugin/histograms/tags")
    assert "kl_per_dimension" in histograms["model"]
    images = get_json(base, "/data/plugin/images/tags")
    assert {"samples", "reconstructions"} <= set(images["model"])
    shown = get_json(base, "/data/plugin/images/images", run="model", tag="samples")
    assert [entry["step"] for entry in shown] == [int(r["epoch"]) for r in rows]
