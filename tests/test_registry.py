"""The model-family registry: a new family is one class and one registry entry.

The toy family below (a linear-Gaussian VAE: one dense layer each way) is defined here and
nowhere else; ``train``, ``evaluate``, ``sample`` and ``export`` run on it through the CLI
(in this process, with click's runner, so that the registration is seen). A command that
needs a capability the family lacks refuses in one line that names the capability.
"""

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tfvae.config import RunConfig, TrainConfig, load_preset
from tfvae.errors import TfvaeError
from tfvae.models import registry


def _toy_class():
    import keras
    from keras import layers

    from tfvae import likelihoods
    from tfvae.models import VAE
    from tfvae.networks import PositiveScale

    class LinearVAE(VAE):
        """Toy family: q(z|x) and p(x|z) each one dense layer of the flattened image."""

        def __init__(self, config, **options):
            shape, d = tuple(config.image_shape), config.latent_dim
            images = keras.Input(shape, name="images")
            h = layers.Flatten(name="flatten")(images)
            scale = PositiveScale(config.scale_floor, name="scale", dtype="float32")(
                layers.Dense(d, name="scale_raw", dtype="float32")(h))
            encoder = keras.Model(images, {"loc": layers.Dense(d, name="loc", dtype="float32")(h), "scale": scale},
                                  name="encoder")
            z = keras.Input((d,), name="z")

            def raw(name):
                flat = layers.Dense(math.prod(shape), name=f"{name}_dense", dtype="float32")(z)
                return layers.Reshape(shape, name=name, dtype="float32")(flat)

            decoder = keras.Model(z, likelihoods.for_config(config).head(raw, config, z), name="decoder")
            super().__init__(config, encoder=encoder, decoder=decoder, **options)

    return LinearVAE


@pytest.fixture(scope="module")
def toy_family():
    registry.register(registry.Family("toylinear", "a linear-Gaussian toy VAE (tests only)",
                                      model_class=_toy_class()))
    # The same networks, recorded as a family whose decoder is not exportable.
    registry.register(registry.Family("toynoexport", "the toy without an exportable decoder",
                                      model_class=registry.family("toylinear").model_class,
                                      exportable_decoder=False))
    yield registry.family("toylinear")
    registry.unregister("toylinear")
    registry.unregister("toynoexport")


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """48 grey 12×12 images in two class folders: bright squares and bright bars."""
    root = tmp_path_factory.mktemp("toy_images") / "shapes"
    rng = np.random.default_rng(0)
    for c in ("squares", "bars"):
        (root / c).mkdir(parents=True)
        for i in range(24):
            img = np.zeros((12, 12), np.uint8)
            r, s = rng.integers(0, 6, 2)
            if c == "squares":
                img[r:r + 5, s:s + 5] = 255
            else:
                img[:, s:s + 3] = 255
            Image.fromarray(img).save(root / c / f"{i:02d}.png")
    return root


def invoke(*args):
    from tfvae.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


def test_a_toy_family_trains_evaluates_samples_and_exports_through_the_cli(toy_family, image_folder, tmp_path):
    assert "toylinear" in registry.names()
    run = tmp_path / "run"
    result = invoke("train", "--image-dir", image_folder, "--model", "toylinear", "--latent-dim", 3, "--epochs", 2,
                    "--batch-size", 16, "--validation-size", 8, "--run-dir", run, "--no-tensorboard")
    assert result.exit_code == 0, result.output[-2000:]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["model"] == "toylinear"
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"neg_elbo", "reconstruction", "kl", "val_neg_elbo"} <= set(header)  # the VAE's named terms

    result = invoke("evaluate", run, "-k", 3)
    assert result.exit_code == 0, result.output[-2000:]
    report = json.loads((run / "eval.json").read_text())
    assert report["protocol"]["iw_samples"] == 3 and np.isfinite(report["metrics"]["nll"])
    assert report["metrics"]["nll"] <= report["metrics"]["neg_elbo"] + 1e-3  # the IW bound is the tighter

    out = tmp_path / "s.png"
    result = invoke("sample", run, "-n", 4, "--out", out)
    assert result.exit_code == 0, result.output[-2000:]
    assert out.read_bytes()[:4] == b"\x89PNG"

    result = invoke("export", run, "--out", tmp_path / "exported", "--name", "toy")
    assert result.exit_code == 0, result.output[-2000:]
    import tensorflow as tf

    decoder = tf.saved_model.load(str(tmp_path / "exported" / "toy" / "decoder" / "1"))
    images = decoder.signatures["serving_default"](z=tf.zeros([2, 3]))["images"]
    assert images.shape == (2, 12, 12, 1)

    # Record the same run as the family without an exportable decoder: export refuses in one line.
    cfg["model"]["model"] = "toynoexport"
    (run / "config.json").write_text(json.dumps(cfg))
    result = invoke("export", run, "--out", tmp_path / "exported", "--name", "toy2")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "exportable" in lines[0] and "toynoexport" in lines[0], result.output
    assert not (tmp_path / "exported" / "toy2").exists()


def test_the_model_choices_and_validation_come_from_the_registry(toy_family):
    result = invoke("train", "--help")
    assert "toylinear" in result.output
    with pytest.raises(TfvaeError, match="--objective iwae needs --model"):
        RunConfig.from_options(dict(model="toylinear", objective="iwae", train_iw_samples=2)).resolved().validate()
    with pytest.raises(TfvaeError, match="--prior mog needs --model"):
        RunConfig.from_options(dict(model="toylinear", prior="mog")).resolved().validate()
    RunConfig.from_options(dict(model="toylinear", free_bits=0.1)).resolved().validate()  # its KL term is scheduled


def test_capabilities_are_data_and_names_are_unique():
    for f in registry.families():
        assert f.keras == (f.model_class is not None)
        assert f.keras or (f.fit is not None and f.load is not None), f.name
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.Family("vae", "again"))
    with pytest.raises(TfvaeError, match="--model must be one of"):
        registry.family("gan")
    assert registry.with_capability(latent_groups=True) == ("hvae",)
    assert "cvae" not in registry.with_capability(exportable_decoder=True)


def test_train_uses_the_default_familys_recipe_where_the_command_line_and_preset_are_silent(monkeypatch, tmp_path):
    """``python cli.py train --dataset mnist`` trains the hierarchical VAE with its family's
    recipe (issue 28); an option given on the command line, or a preset, wins over it; another
    family keeps TrainConfig's defaults. ``--help`` shows both defaults."""
    import tfvae.training

    seen = []

    class Captured(Exception):
        pass

    def fake_train(cfg, run_dir, **_):  # what train would be given; nothing is trained
        seen.append(cfg)
        raise Captured

    monkeypatch.setattr(tfvae.training, "train", fake_train)
    recipe = registry.recipe_for(registry.DEFAULT_FAMILY)
    assert registry.family(registry.DEFAULT_FAMILY).latent_groups
    assert any(getattr(TrainConfig(), k) != v for k, v in recipe.items())
    for args in ([], ["--epochs", 7], ["--model", "vae"], ["--preset", "mnist-hvae"]):
        result = invoke("train", "--dataset", "mnist", *args, "--run-dir", tmp_path / "r")
        assert isinstance(result.exception, Captured), result.output[-2000:]
    default, shorter, vae, preset = (cfg.train for cfg in seen)
    assert seen[0].model.model == registry.DEFAULT_FAMILY
    assert {k: getattr(default, k) for k in recipe} == recipe
    assert shorter.epochs == 7 and {k: getattr(shorter, k) for k in recipe if k != "epochs"} == \
        {k: v for k, v in recipe.items() if k != "epochs"}
    assert shorter.lr_schedule == recipe["lr_schedule"] != TrainConfig().lr_schedule
    assert seen[2].model.model == "vae" and {k: getattr(vae, k) for k in recipe} == \
        {k: getattr(TrainConfig(), k) for k in recipe}
    assert preset.epochs == load_preset("mnist-hvae")["train"]["epochs"]
    shown = " ".join(invoke("train", "--help").output.split())
    assert f"--model {registry.DEFAULT_FAMILY}: {recipe['lr_schedule']}" in shown and "[default: hvae]" in shown
