"""Latent-space tools: interpolation, maps, few-label classification, anomaly scores, inpainting."""

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_cli
from test_cli import assert_one_line_error
from test_data import make_idx_folder

from tfvae.latent import lerp, slerp


def test_lerp_and_slerp_endpoints_and_norms():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.normal(size=16) * rng.uniform(0.5, 2), rng.normal(size=16) * rng.uniform(0.5, 2)
        t = np.linspace(0, 1, 11)
        for f in (lerp, slerp):
            path = f(a, b, t)
            np.testing.assert_allclose(path[0], a, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(path[-1], b, rtol=1e-5, atol=1e-6)
        norms = np.linalg.norm(slerp(a, b, t), axis=1)
        lo, hi = sorted([np.linalg.norm(a), np.linalg.norm(b)])
        assert np.all(norms >= lo * (1 - 1e-5)) and np.all(norms <= hi * (1 + 1e-5))
    # The linear midpoint of two orthogonal unit vectors is short; slerp's is not.
    a, b = np.eye(2)
    assert np.linalg.norm(lerp(a, b, [0.5])[0]) < 0.8 and np.isclose(np.linalg.norm(slerp(a, b, [0.5])[0]), 1.0)


@pytest.mark.slow
def test_interpolation_endpoints_decode_to_the_reconstructions(run_dir, tmp_path):
    from tfvae.codes import posterior_means
    from tfvae.latent import interpolate, test_split

    result = interpolate(run_dir, 3, 5, steps=6, method="slerp", analogy=(0, 1, 2), out=tmp_path)
    assert (tmp_path / "interpolation.png").is_file() and result["analogy"]["C"] == 2
    model, _, _, images = test_split(run_dir)
    z = posterior_means(model, images[[3, 5]])
    path = slerp(z[0], z[1], np.linspace(0, 1, 6))
    decoded = model.decode_mean(tf.constant(path)).numpy()
    np.testing.assert_allclose(decoded[[0, -1]], model.decode_mean(tf.constant(z)).numpy(), atol=1e-5)
    assert result["norms"][0] == pytest.approx(result["endpoint_norms"][0], rel=1e-5)


@pytest.mark.slow
def test_manifold_grid_has_the_requested_shape(tmp_path, tfds_dir):
    run_dir = tmp_path / "z2"
    result = run_cli("train", "--model", "vae", "--dataset", "mnist", "--max-train-examples", 1000, "--validation-size", 500,
                     "--epochs", 1, "--latent-dim", 2, "--run-dir", run_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    result = run_cli("latent", run_dir, "--grid", 7)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((run_dir / "figures" / "latent_map.json").read_text())
    assert report["manifold_shape"] == [7, 7, 28, 28, 1]
    assert (run_dir / "figures" / "manifold.png").is_file() and (run_dir / "figures" / "latent_map.png").is_file()


@pytest.mark.slow
def test_logistic_regression_on_encoder_means_with_1000_labels(brief_run, tmp_path):
    from tfvae.latent import classify

    result = classify(brief_run, label_counts=[1000], seeds=1, out=tmp_path)
    accuracy = {(r["features"], r["classifier"]): r["accuracy_mean"] for r in result["rows"]}
    print("test accuracy with 1000 labels:", accuracy)
    assert accuracy[("encoder mean", "logistic regression")] > 0.80
    assert set(f for f, _ in accuracy) == {"encoder mean", "raw pixels", "PCA (16)"}


@pytest.mark.slow
def test_anomaly_scores(brief_run, tmp_path):
    from tfvae.anomaly import anomaly

    same = anomaly(brief_run, ood="mnist", max_examples=1000, out=tmp_path)
    print("model against itself (test vs validation):", same["scores"])
    assert abs(same["scores"]["neg_elbo"]["auroc"] - 0.5) <= 0.05
    assert abs(same["scores"]["typicality_neg_elbo"]["auroc"] - 0.5) <= 0.05
    blank = anomaly(brief_run, corruption="blank", max_examples=1000, out=tmp_path)
    print("blank corruption:", blank["scores"])
    assert blank["scores"]["typicality_neg_elbo"]["auroc"] > 0.9
    assert (tmp_path / "anomaly_corrupt-blank.png").is_file()


@pytest.mark.slow
def test_inpainting_keeps_observed_pixels_and_beats_the_mean_image(brief_run, tmp_path):
    from tfvae.anomaly import inpaint

    result = inpaint(brief_run, "random:0.5", n=32, steps=10, out=tmp_path)
    print("inpainting:", result["completion"], "baseline:", result["mean_image_baseline"])
    assert result["observed_pixels_unchanged"]
    assert result["completion"]["mse_per_missing_pixel"] < result["mean_image_baseline"]["mse_per_missing_pixel"]
    assert (tmp_path / "inpaint_random0.5.png").is_file()


@pytest.mark.slow
def test_latent_commands_bad_input(run_dir, tmp_path):
    run_dir = shutil.copytree(run_dir, tmp_path / "run")  # a copy: the commands lock the run they read
    assert_one_line_error(run_cli("interpolate", run_dir, "--from", 0, "--to", 10**6), "outside the test set")
    assert_one_line_error(run_cli("interpolate", run_dir, "--from", 0, "--to", 1, "--steps", 1), "--steps")
    assert_one_line_error(run_cli("classify", run_dir, "--labels", "100,999999"), "larger than the training set")
    assert_one_line_error(run_cli("classify", run_dir, "--labels", "ten"), "--labels")
    assert_one_line_error(run_cli("inpaint", run_dir, "--mask", "diagonal"), "--mask")
    assert_one_line_error(run_cli("inpaint", run_dir, "--mask", "random:1.5"), "--mask")
    assert_one_line_error(run_cli("anomaly", run_dir), "exactly one of")
    # A model of 6×5 images cannot score 28×28 MNIST.
    folder = make_idx_folder(tmp_path / "idx", n_train=60, n_test=10)
    toy = tmp_path / "toy"
    result = run_cli("train", "--model", "vae", "--dataset", "toy", "--idx-dir", folder, "--validation-size", 20, "--epochs", 1,
                     "--batch-size", 20, "--latent-dim", 2, "--hidden-units", 16, "--conv-filters", "4,8",
                     "--run-dir", toy)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_one_line_error(run_cli("anomaly", toy, "--ood", "mnist"), "images are (28, 28, 1)")
