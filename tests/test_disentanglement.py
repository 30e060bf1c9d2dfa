"""Disentanglement: the dSprites-style generator, β-TCVAE's loss, and the four metrics on codes
whose answer is known; one short real training of a VAE and a β-TCVAE on a dsprites slice."""

import csv
import json
import shutil

import numpy as np
import pytest

from conftest import run_cli
from tfvae import dsprites
from tfvae import disentanglement as D

# ---- the generator -----------------------------------------------------------------------


def test_factor_counts_and_values_follow_dsprites():
    assert dsprites.FACTOR_SIZES == (3, 6, 40, 32, 32)
    assert dsprites.NUM_IMAGES == 737280
    values = dsprites.factor_values()
    assert [len(v) for v in values] == list(dsprites.FACTOR_SIZES)
    assert values[1][0] == 0.5 and values[1][-1] == 1.0
    assert values[2][0] == 0.0 and np.isclose(values[2][-1], 2 * np.pi)
    assert values[3][0] == 0.0 and values[3][-1] == 1.0
    factors = dsprites.all_factors()
    assert factors.shape == (737280, 5)
    assert len(np.unique(factors, axis=0)) == 737280  # every combination once
    order = dsprites.stored_order()
    assert np.array_equal(order, dsprites.stored_order())  # the stored order is fixed
    assert sorted(order[:5].tolist()) != list(range(5))


def test_images_are_deterministic_binary_and_placed_by_the_factors():
    f = dsprites.sample_factors(200, np.random.default_rng(3))
    a, b = dsprites.render(f), dsprites.render(f)
    assert a.shape == (200, 64, 64, 1) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert set(np.unique(a)) <= {0, 255}
    assert (a.reshape(200, -1).max(axis=1) == 255).all()  # every sprite is visible
    # The centre of mass moves with position x / y (columns / rows), one pixel per index.
    base = np.array([[0, 5, 0, 10, 20]])
    moved = np.array([[0, 5, 0, 13, 22]])
    img0, img1 = dsprites.render(base)[0, ..., 0] > 0, dsprites.render(moved)[0, ..., 0] > 0
    rows, cols = np.nonzero(img0)
    rows1, cols1 = np.nonzero(img1)
    assert np.isclose(cols1.mean() - cols.mean(), 3) and np.isclose(rows1.mean() - rows.mean(), 2)
    # A larger scale covers more pixels.
    areas = [int(dsprites.render(np.array([[1, k, 0, 16, 16]])).astype(bool).sum()) for k in range(6)]
    assert areas == sorted(areas) and areas[0] < areas[-1]
    with pytest.raises(ValueError):
        dsprites.render(np.array([[3, 0, 0, 0, 0]]))


def test_the_three_shapes_are_distinguishable():
    # Same scale, orientation and position: the three outlines differ, by more than a few pixels.
    images = dsprites.render(np.array([[s, 5, 0, 16, 16] for s in range(3)])).astype(bool).reshape(3, -1)
    for i in range(3):
        for j in range(i + 1, 3):
            assert (images[i] != images[j]).sum() > 40
    # A nearest-outline classifier over random scales, orientations and positions names the shape.
    rng = np.random.default_rng(0)
    f = dsprites.sample_factors(300, rng)
    x = dsprites.render(f).astype(np.float32).reshape(300, -1)
    # Compare each image with the three shapes at its own scale, orientation and position.
    guesses = []
    for i in range(300):
        candidates = dsprites.render(np.array([[s, *f[i, 1:]] for s in range(3)])).astype(np.float32).reshape(3, -1)
        guesses.append(int(np.argmin(((candidates - x[i]) ** 2).sum(axis=1))))
    assert np.mean(np.array(guesses) == f[:, 0]) > 0.97


def test_load_dataset_dsprites_splits_and_labels():
    from tfvae.config import DataConfig
    from tfvae.data import load_dataset

    data = load_dataset(DataConfig(dataset="dsprites", validation_size=300, max_train_examples=1200))
    assert data.image_shape == (64, 64, 1)
    assert len(data.train) == 1200 and len(data.validation) == 300 and len(data.test) == dsprites.TEST_SIZE
    assert data.class_names == ["square", "ellipse", "heart"]
    assert set(np.unique(data.train_labels)) == {0, 1, 2}  # a prefix of the stored order mixes the shapes
    # Labels are the shape factor of the image they sit beside.
    order = dsprites.stored_order()
    test_factors = dsprites.all_factors(order[-dsprites.TEST_SIZE:])
    assert np.array_equal(data.test_labels, test_factors[:, 0])
    assert np.array_equal(data.test[:5], dsprites.render(test_factors[:5]))


# ---- the metrics on codes whose answer is known ------------------------------------------------
SIZES = (5, 5, 5, 5)
HADAMARD = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2.0  # mixes every factor into every dimension


def _factors(n, seed):
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, s, n) for s in SIZES], axis=1)


def _codes(factors, matrix):
    noise = 0.05 * np.random.default_rng(1).standard_normal(factors.shape)
    return (factors + noise) @ matrix


@pytest.fixture(scope="module")
def synthetic():
    train, test = _factors(1500, 0), _factors(500, 1)
    out = {}
    for name, matrix in (("identity", np.eye(4)), ("permutation", np.eye(4)[[2, 0, 3, 1]]), ("mixed", HADAMARD)):
        m = D.mig(_codes(train, matrix), train)
        d = D.dci(_codes(train, matrix), train, _codes(test, matrix), test)
        data = D.FactorData("abcd", SIZES, lambda n, rng: np.stack([rng.integers(0, s, n) for s in SIZES], 1),
                            lambda f: f)
        fv = D.factor_vae_score(lambda x, m_=matrix: _codes(x, m_), data, np.random.default_rng(0), votes=200,
                                batch_size=32, variance_points=2000)
        bv = D.beta_vae_score(lambda x, m_=matrix: _codes(x, m_), data, np.random.default_rng(0), points=200,
                              batch_size=32)
        out[name] = {"mig": m["mig"], "dci": d["disentanglement"], "completeness": d["completeness"],
                     "informativeness": d["informativeness"], "factor_vae": fv["score"], "beta_vae": bv["score"]}
    return out


def test_codes_equal_to_the_factors_score_near_one(synthetic):
    s = synthetic["identity"]
    assert s["mig"] > 0.9 and s["dci"] > 0.9 and s["completeness"] > 0.9 and s["informativeness"] > 0.9
    assert s["factor_vae"] > 0.9 and s["beta_vae"] > 0.9


def test_codes_that_mix_the_factors_score_near_zero(synthetic):
    s = synthetic["mixed"]
    assert s["mig"] < 0.1 and s["dci"] < 0.1 and s["completeness"] < 0.1
    assert s["factor_vae"] < 0.45  # chance is 1/4: every dimension's variance falls alike
    assert s["informativeness"] > 0.5  # the mixed code still tells the factors apart


def test_a_permutation_of_the_dimensions_changes_nothing(synthetic):
    a, b = synthetic["identity"], synthetic["permutation"]
    for key in ("mig", "dci", "completeness", "factor_vae", "beta_vae"):
        assert b[key] == pytest.approx(a[key], abs=0.02), key


def test_dci_closed_forms():
    assert D.dci_from_importance(np.eye(3)) == pytest.approx((1.0, 1.0))
    assert D.dci_from_importance(np.ones((3, 3))) == pytest.approx((0.0, 0.0), abs=1e-12)
    # One dimension explains both factors: disentanglement 0 (it is shared), completeness 1.
    assert D.dci_from_importance(np.array([[1.0, 1.0], [0.0, 0.0]])) == pytest.approx((0.0, 1.0))


def test_mig_of_one_informative_dimension_is_its_share_of_the_entropy():
    factors = _factors(4000, 2)[:, :2]
    codes = np.c_[factors[:, 0], np.random.default_rng(0).standard_normal(4000)]
    result = D.mig(codes, factors, bins=5)  # 5 bins hold the 5 values exactly
    # Factor 0: I(z0; v0) = H(v0), gap ≈ 1; factor 1: no dimension knows it, gap ≈ 0.
    assert result["per_factor"][0] > 0.95 and result["per_factor"][1] < 0.05


# ---- β-TCVAE -----------------------------------------------------------------------------------
def test_btcvae_loss_at_beta_one_is_the_elbo_on_the_same_samples():
    import tensorflow as tf

    from tfvae.config import ModelConfig
    from tfvae.models import build_model

    cfg = ModelConfig(model="btcvae", latent_dim=6, image_shape=[64, 64, 1], conv_filters=[8, 8, 8, 8],
                      hidden_units=[32])
    model = build_model(cfg, beta=1.0, dataset_size=5000, seed=0)
    x = tf.constant(dsprites.render(dsprites.sample_factors(16, np.random.default_rng(0))) / 255.0, tf.float32)
    eps = tf.random.stateless_normal([16, 1, 6], seed=[1, 2])
    loss = model.losses_for(x, eps=eps)["loss"]
    q = model.posterior(x)
    z = q.mean() + q.stddev() * tf.transpose(eps, [1, 0, 2])
    neg_elbo = tf.reduce_mean(-model.likelihood(z).log_prob(x) + q.log_prob(z) - model.prior().log_prob(z))
    assert float(loss) == pytest.approx(float(neg_elbo), rel=1e-5)
    # β > 1 adds (β − 1)·TC on the same samples.
    model6 = build_model(cfg, beta=6.0, dataset_size=5000, seed=0)
    model6.set_weights(model.get_weights())
    terms6 = model6.losses_for(x, eps=eps)
    assert float(terms6["loss"]) == pytest.approx(float(loss) + 5 * float(terms6["tc"]), rel=1e-5)


def test_minibatch_weighted_terms_equal_a_hand_computation_with_their_constants():
    """Chen et al. 2018, eq. 5 (minibatch-weighted sampling): log q(z_i) ≈ logsumexp_j log q(z_i|x_j)
    − log(N·M), and the same per dimension, so TC carries the constant (D − 1)·log(N·M) and the
    dimension-wise KL −D·log(N·M): here they do not cancel, and N enters as given."""
    import tensorflow as tf
    from scipy.special import logsumexp
    from scipy.stats import norm

    from tfvae.models.btcvae import kl_decomposition

    rng = np.random.default_rng(3)
    s, b, d, n = 2, 5, 3, 1000
    loc, scale = rng.normal(size=(b, d)), rng.uniform(0.3, 1.5, size=(b, d))
    z = loc + scale * rng.normal(size=(s, b, d))
    terms = {k: v.numpy() for k, v in kl_decomposition(tf.constant(z, tf.float32), tf.constant(loc, tf.float32),
                                                       tf.constant(scale, tf.float32), dataset_size=n).items()}
    pair = norm.logpdf(z[:, :, None, :], loc[None, None], scale[None, None])  # [S, B(i), B(j), D]
    log_nm = np.log(n * b)
    log_qzx = norm.logpdf(z, loc, scale).sum(-1)
    log_qz = logsumexp(pair.sum(-1), axis=2) - log_nm
    log_prod = (logsumexp(pair, axis=2) - log_nm).sum(-1)
    log_pz = norm.logpdf(z).sum(-1)
    expected = {"mi": log_qzx - log_qz, "tc": log_qz - log_prod, "dim_kl": log_prod - log_pz}
    for key, value in expected.items():
        np.testing.assert_allclose(terms[key], value, rtol=1e-4, atol=1e-3, err_msg=key)
    # The dataset size enters only through the constant: N → 10·N moves TC by +(D − 1)·ln 10.
    tenfold = kl_decomposition(tf.constant(z, tf.float32), tf.constant(loc, tf.float32),
                               tf.constant(scale, tf.float32), dataset_size=10 * n)["tc"].numpy()
    np.testing.assert_allclose(tenfold - terms["tc"], (d - 1) * np.log(10), atol=1e-4)


def test_total_correlation_of_a_gaussian_code_is_its_closed_form():
    from tfvae.models.btcvae import total_correlation

    rng = np.random.default_rng(0)
    rho = 0.8
    correlated = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], 3000)
    independent = rng.standard_normal((3000, 2))
    tc_corr = total_correlation(correlated, np.full_like(correlated, 0.05))["tc"]
    tc_ind = total_correlation(independent, np.full_like(independent, 0.05))["tc"]
    # KL(N(0, Σ) ‖ N(0, diag Σ)) = −½ log(1 − ρ²) = 0.51 nats; the sample estimate carries a
    # small kernel bias, the same for both codes.
    assert tc_corr - tc_ind == pytest.approx(-0.5 * np.log(1 - rho**2), abs=0.1)
    assert tc_ind < 0.25
    same = total_correlation(np.zeros((200, 3)), np.ones((200, 3)))
    assert abs(same["tc"]) < 1e-5 and abs(same["mi"]) < 1e-5


# ---- a short real training -------------------------------------------------------------------------
ARCH = ["--dataset", "dsprites", "--max-train-examples", "8000", "--validation-size", "500", "--epochs", "3",
        "--latent-dim", "10", "--conv-filters", "32,32,64,64", "--hidden-units", "256", "--seed", "0"]


@pytest.fixture(scope="module")
def dsprites_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dsprites")
    runs = {}
    for name, extra in (("vae", ["--model", "vae"]), ("btcvae", ["--model", "btcvae", "--beta", "6"])):
        result = run_cli("train", "--model", "vae", *ARCH, *extra, "--run-dir", root / name, "--no-tensorboard")
        assert result.returncode == 0, result.stderr[-2000:]
        runs[name] = root / name
    return runs


@pytest.mark.slow
def test_btcvae_lowers_the_total_correlation(dsprites_runs):
    import tensorflow as tf

    from tfvae.models.btcvae import total_correlation
    from tfvae.rundir import load_model

    x = tf.constant(dsprites.render(dsprites.sample_factors(1500, np.random.default_rng(5))) / 255.0, tf.float32)
    tc = {}
    for name, run in dsprites_runs.items():
        model, _ = load_model(run)
        params = model.encoder(x)
        tc[name] = total_correlation(params["loc"].numpy(), params["scale"].numpy())["tc"]
    assert tc["btcvae"] < tc["vae"]
    with open(dsprites_runs["btcvae"] / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    # The training estimate (minibatch-weighted sampling, epoch means) has a closed-form ceiling:
    # Σ_j Π_d q(z_id|x_j) ≤ Π_d Σ_j q(z_id|x_j), so TC_MWS ≤ (D − 1)·log(N·M), with N the training
    # images and M the batch (equality when the batch's posteriors coincide). A wrong constant
    # (its sign, or N·M) breaks it.
    cfg = json.loads((dsprites_runs["btcvae"] / "config.json").read_text())
    ceiling = (cfg["model"]["latent_dim"] - 1) * np.log(cfg["meta"]["num_train"] * cfg["train"]["batch_size"])
    tcs = [float(r["tc"]) for r in rows]
    assert all(np.isfinite(t) and t <= ceiling + 1e-3 for t in tcs), (tcs, ceiling)


@pytest.mark.slow
def test_disentanglement_command_writes_the_four_metrics(dsprites_runs):
    run = dsprites_runs["btcvae"]
    result = run_cli("disentanglement", run, "--points", "600", "--votes", "30")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "MIG" in result.stdout and "FactorVAE score" in result.stdout
    out = json.loads((run / "disentanglement.json").read_text())
    for key in ("mig", "dci_disentanglement", "dci_completeness", "dci_informativeness", "factor_vae_score",
                "beta_vae_score"):
        assert 0.0 <= out["metrics"][key] <= 1.0, key
    # Beyond the range: a trained code beats chance. Five factors: a FactorVAE classifier that
    # guesses is right 1/5 of the time; DCI's informativeness is the mean accuracy over the factors,
    # whose uniform values a guess gets right with mean(1/size) = 0.12; MIG is 0 for a code that knows
    # nothing. (The β-VAE score's 15 evaluation points here cannot tell 3 epochs of training from
    # chance, so it is not asserted.)
    assert out["metrics"]["factor_vae_score"] > 0.2
    chance = float(np.mean(1.0 / np.asarray(dsprites.FACTOR_SIZES)))
    assert out["metrics"]["dci_informativeness"] > chance and out["metrics"]["mig"] > 0.0
    assert out["protocol"]["votes"] == 30 and out["protocol"]["prune_std"] == 0.05
    assert out["protocol"]["points"] == 600 and out["protocol"]["seed"] == 0
    assert out["aggregate_posterior"]["tc"] > -0.5 and "total correlation" in result.stdout
    assert len(out["dimensions"]) == 10 and out["dimensions"][0]["factor"] in dsprites.FACTOR_NAMES
    assert (run / "figures" / "disentanglement_traverse.png").stat().st_size > 1000


def test_the_metrics_are_seeded_by_the_protocol():
    """The same protocol seed gives the same four metrics; another seed other draws."""
    data = D.FactorData("abcd", SIZES, lambda n, rng: np.stack([rng.integers(0, s, n) for s in SIZES], 1),
                        lambda f: f)
    encode = lambda x: _codes(x, HADAMARD)  # noqa: E731
    runs = [D.all_metrics(encode, data, D.Protocol(seed=seed, points=400, votes=40, batch_size=16,
                                                   variance_points=400)) for seed in (0, 0, 1)]
    for r in runs:
        r.pop("seconds")
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_disentanglement_refuses_data_without_known_factors(run_dir, tmp_path):
    run_dir = shutil.copytree(run_dir, tmp_path / "run")  # a copy: the command locks the run it reads
    result = run_cli("disentanglement", run_dir)
    assert result.returncode == 2
    assert "known factors" in result.stderr and "mnist" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (run_dir / "disentanglement.json").exists()


def test_btcvae_refuses_other_priors_and_objectives(tmp_path):
    for extra in (["--prior", "mog"], ["--objective", "iwae"], ["--free-bits", "0.1"]):
        result = run_cli("train", "--dataset", "dsprites", "--model", "btcvae", *extra, "--run-dir", tmp_path / "r")
        assert result.returncode == 2, extra
        assert "btcvae" in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "r").exists()


def test_factor_vae_score_leaves_out_dimensions_under_the_reference_standard_deviation():
    """disentanglement_lib's study prunes dimensions whose standard deviation over the data is
    under 0.05 (a nearly collapsed dimension); a copy of factor a scaled to std ≈ 0.01 is left out
    at the default and kept with the threshold off."""
    data = D.FactorData("abcd", SIZES, lambda n, rng: np.stack([rng.integers(0, s, n) for s in SIZES], 1),
                        lambda f: f)

    def encode(x):
        codes = _codes(x, np.eye(4))
        return np.concatenate([codes, 0.01 * codes[:, :1] / np.std(codes[:, 0])], axis=1)

    pruned = D.factor_vae_score(encode, data, np.random.default_rng(0), votes=50, batch_size=32, variance_points=2000)
    kept = D.factor_vae_score(encode, data, np.random.default_rng(0), votes=50, batch_size=32, variance_points=2000,
                              prune_std=0.0)
    assert pruned["active_dimensions"] == [0, 1, 2, 3]
    assert kept["active_dimensions"] == [0, 1, 2, 3, 4]
    assert D.Protocol().votes == 10000 and D.Protocol().prune_std == 0.05  # the study's sample sizes


def test_factor_entropy_is_the_closed_form_of_uniform_and_skewed_factors():
    rng = np.random.default_rng(0)
    uniform = np.repeat(np.arange(6), 100)  # exactly uniform over 6 values: ln 6
    skewed = np.array([0] * 450 + [1] * 150)  # p = (3/4, 1/4)
    h = D.entropy(np.stack([rng.permutation(uniform), skewed], 1))
    assert h[0] == pytest.approx(np.log(6), abs=1e-12)
    assert h[1] == pytest.approx(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25)), abs=1e-12)
