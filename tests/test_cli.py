"""The command line: train -> evaluate -> sample on a small slice, and every bad input
ending in one line on stderr, a non-zero exit, no traceback and nothing overwritten."""

import json
import os
import shutil

import numpy as np
import pytest

from conftest import run_cli
from test_data import make_idx_folder


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0, result.stdout
    err = result.stderr.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error:"), err
    for fragment in fragments:
        assert fragment in err, err


def test_help_lists_the_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("train", "evaluate", "sample"):
        assert command in result.stdout
    assert "--latent-dim" in run_cli("train", "--help").stdout


@pytest.fixture(scope="module")
def trained_run(run_dir, tmp_path_factory):
    """A copy of the session's trained run (this module's tests write into it: eval.json),
    beside what its training printed (``train_stdout.txt``)."""
    copy = tmp_path_factory.mktemp("runs") / "slice"
    shutil.copytree(run_dir, copy)
    shutil.copyfile(run_dir.parent / "train_stdout.txt", copy.parent / "train_stdout.txt")
    return copy


@pytest.mark.slow
def test_training_into_a_pipe_prints_one_line_per_epoch(trained_run):
    """Standard output is a pipe here (as in CI logs or nohup): no progress bar, one line per epoch."""
    out = (trained_run.parent / "train_stdout.txt").read_text()
    assert "\r" not in out and "━" not in out and "[====" not in out, out[:500]
    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"], out
    import csv

    with open(trained_run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for line, row in zip(lines, rows):
        assert f"validation −ELBO {float(row['val_neg_elbo']):.2f}" in line, (line, row)


@pytest.mark.slow
def test_train_writes_a_complete_run_directory(trained_run):
    for name in ("config.json", "metrics.csv", "summary.json", "checkpoints/best.weights.h5",
                 "checkpoints/last.weights.h5", "figures/reconstructions.png", "figures/samples.png",
                 "figures/loss.png"):
        assert (trained_run / name).is_file(), name
        if name.endswith(".png"):
            assert (trained_run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((trained_run / "config.json").read_text())
    assert config["model"]["image_shape"] == [28, 28, 1] and config["model"]["latent_dim"] == 8
    assert config["data"]["binarization"] == "dynamic" and config["meta"]["num_train"] == 3000
    lines = (trained_run / "metrics.csv").read_text().splitlines()
    assert len(lines) == 3 and "val_neg_elbo" in lines[0]


def test_loss_figure_axes_leave_out_a_first_epoch_spike(tmp_path, monkeypatch):
    """A KL warm-up's first epoch can read 10^5 nats; every panel's axis spans the later epochs."""
    import csv

    from tfvae import plots

    rows = [{"epoch": e, "neg_elbo": 2e5 if e == 0 else 95 - e, "reconstruction": 70 - e,
             "kl": 2e5 if e == 0 else 25 + 5 / e, "val_neg_elbo": 97 - e, "val_reconstruction": 71 - e,
             "val_kl": 2e5 if e == 0 else 26 + 5 / e} for e in range(6)]
    with open(tmp_path / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig))
    plots.save_loss_curves(tmp_path / "metrics.csv", tmp_path / "loss.png")
    (fig,) = figures
    for ax, later in zip(fig.axes, ([90, 96], [65, 70], [26, 31])):
        low, high = ax.get_ylim()
        assert low <= min(later) and max(later) <= high < 1000, (ax.get_title(), low, high)


@pytest.mark.slow
def test_evaluate_and_sample_read_the_run(trained_run, tmp_path):
    result = run_cli("evaluate", trained_run, "--iw-samples", 20, "--max-examples", 50)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test NLL" in result.stdout
    report = json.loads((trained_run / "eval.json").read_text())
    assert report["protocol"]["iw_samples"] == 20 and report["protocol"]["num_images"] == 50
    assert report["protocol"]["split"] == "test" and report["protocol"]["binarization_seed"] == 0
    m = report["metrics"]
    # The importance-weighted bound is the tighter one: no slack (the seeded samples make it deterministic).
    assert np.isfinite(m["nll"]) and m["nll"] < m["neg_elbo"]
    assert m["elbo_gap"] == pytest.approx(m["neg_elbo"] - m["nll"], abs=1e-6)
    assert len(m["kl_per_dim"]) == 8 and 0 <= m["active_units"] <= 8
    out = tmp_path / "grid.png"
    result = run_cli("sample", trained_run, "-n", 9, "--out", out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.read_bytes()[:4] == b"\x89PNG"
    before = out.read_bytes()
    assert_one_line_error(run_cli("sample", trained_run, "-n", 4, "--out", out), "already exists")
    assert out.read_bytes() == before


BAD_TRAIN_OPTIONS = [
    (["--latent-dim", "0"], "--latent-dim"),
    (["--latent-dim", "-3"], "--latent-dim"),
    (["--beta", "-0.5"], "--beta"),
    (["--epochs", "0"], "--epochs"),
    (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "many"], "--batch-size"),
    (["--arch", "transformer"], "--arch"),
    (["--model", "hvae", "--group-dims", "16"], "--group-dims: a hierarchical VAE needs at least 2 latent groups"),
    (["--model", "hvae", "--group-dims", "16,0"], "--group-dims must be a list of positive integers"),
    (["--model", "hvae", "--latent-dim", "20"], "--latent-dim of an hvae is the sum of --group-dims"),
    (["--latent-dim", "20"], "or --model vae for a one-layer VAE"),  # the default model is the hvae
    (["--preset", "mnist-hvae", "--latent-dim", "20"], "--latent-dim of an hvae is the sum of --group-dims"),
    (["--model", "vae", "--group-dims", "8,8"], "--group-dims needs --model hvae"),
    (["--group-maps", "4,2,1"], "--group-maps has 3 entries, but the decoder has 2 resolutions"),
    (["--group-maps", "4,0"], "--group-maps must be a list of positive integers"),
    (["--arch", "mlp", "--group-maps", "4"], "--group-maps needs --arch conv or resnet"),
    (["--model", "vae", "--posterior-flows", "2"], "--posterior-flows needs --model hvae"),
    (["--model", "hvae", "--prior", "vamp"], "--prior vamp needs --model vae"),
    (["--sigma", "-1", "--likelihood", "gaussian"], "--sigma"),
    pytest.param(["--precision", "mixed_float16"], "--precision mixed_float16: this machine has no GPU",
                 marks=pytest.mark.skipif(shutil.which("nvidia-smi") is not None,
                                          reason="a machine with a GPU accepts mixed_float16")),
]


@pytest.mark.parametrize("args,fragment", BAD_TRAIN_OPTIONS)
def test_bad_train_options(tmp_path, args, fragment):
    result = run_cli("train", *args, "--run-dir", tmp_path / "run")
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "run").exists()


def test_unknown_dataset_suggests_close_matches(tmp_path):
    result = run_cli("train", "--model", "vae", "--dataset", "mnsit", "--run-dir", tmp_path / "run")
    assert_one_line_error(result, "unknown dataset 'mnsit'", "mnist")
    assert not (tmp_path / "run").exists()


def test_missing_dataset_says_how_to_provide_it(tmp_path):
    empty = tmp_path / "tfds"
    empty.mkdir()
    result = run_cli("train", "--model", "vae", "--dataset", "mnist", "--data-dir", empty, "--run-dir", tmp_path / "run")
    assert_one_line_error(result, "TFDS_DATA_DIR", "--data-dir", "--idx-dir")
    assert result.returncode == 2


def test_idx_folder_with_missing_or_malformed_files(tmp_path):
    folder = make_idx_folder(tmp_path / "idx", gz=False)
    (folder / "train-labels-idx1-ubyte").unlink()
    assert_one_line_error(run_cli("train", "--model", "vae", "--idx-dir", folder, "--run-dir", tmp_path / "r1"), "train-labels")
    folder = make_idx_folder(tmp_path / "idx2", gz=False)
    images = folder / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-5])
    assert_one_line_error(run_cli("train", "--model", "vae", "--idx-dir", folder, "--run-dir", tmp_path / "r2"), str(images))
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


def test_existing_run_directory_is_never_overwritten(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("precious")
    folder = make_idx_folder(tmp_path / "idx")
    result = run_cli("train", "--model", "vae", "--idx-dir", folder, "--validation-size", 5, "--epochs", 1, "--run-dir", run_dir)
    assert_one_line_error(result, "already exists")
    assert sorted(p.name for p in run_dir.iterdir()) == ["notes.txt"]
    assert (run_dir / "notes.txt").read_text() == "precious"


@pytest.mark.parametrize("command", ["evaluate", "sample"])
def test_commands_reject_a_folder_that_is_not_a_run(tmp_path, command):
    (tmp_path / "stuff.txt").write_text("x")
    assert_one_line_error(run_cli(command, tmp_path), "not a tfvae run directory", "config.json")
    assert_one_line_error(run_cli(command, tmp_path / "nope"), "not a folder")


def test_train_on_an_idx_folder_with_an_odd_image_size(tmp_path):
    folder = make_idx_folder(tmp_path / "idx", n_train=60, n_test=10)  # 6×5 images
    run_dir = tmp_path / "run"
    result = run_cli("train", "--model", "vae", "--dataset", "toy", "--idx-dir", folder, "--validation-size", 20, "--epochs", 1,
                     "--batch-size", 20, "--latent-dim", 2, "--hidden-units", "16", "--conv-filters", "4,8",
                     "--run-dir", run_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["image_shape"] == [6, 5, 1] and config["model"]["conv_filters"] == [4, 8]
    result = run_cli("evaluate", run_dir, "-k", 5, "--idx-dir", folder)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((run_dir / "eval.json").read_text())["protocol"]["num_images"] == 10


def test_files_are_written_with_the_users_umask_and_strict_json(run_dir, export_dir):
    """Atomic writes (temporary file + rename) still give new files the user's umask, not
    mkstemp's 0600, and JSON files never hold NaN or Infinity."""
    mask = os.umask(0)
    os.umask(mask)
    for path in (run_dir / "config.json", run_dir / "summary.json"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path
        json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{path} holds {c}"))
    card = next((export_dir / "tflite").glob("*/model_card.json"))
    assert card.stat().st_mode & 0o777 == 0o666 & ~mask
    assert next((export_dir / "decoder").iterdir()).stat().st_mode & 0o777 == 0o777 & ~mask
