"""The pretrained export shipped in exported/mnist (made by bench/pretrained_mnist.py): its
files are the ones its card lists, it fits the size budget, it still loads and generates
with the current code, and its card's figures are the ones the script recorded. When a
change breaks it, re-make it with: python bench/pretrained_mnist.py"""

import json
import subprocess

import numpy as np
import pytest

from conftest import ROOT, require_litertjs

SHIPPED = ROOT / "exported" / "mnist"
RECORD = ROOT / "bench" / "results" / "pretrained_mnist.json"
REMAKE = "re-make it with: python bench/pretrained_mnist.py"


@pytest.fixture(scope="module")
def record():
    return json.loads(RECORD.read_text())["figures"]


def tracked_files():
    out = subprocess.run(["git", "ls-files", "exported"], capture_output=True, text=True, cwd=ROOT).stdout
    return sorted(line for line in out.splitlines() if line.strip())


def test_every_shipped_file_matches_its_card_and_the_budget(record):
    from tfvae.lite import verify_export

    card = verify_export(SHIPPED / "tflite" / "1")  # SHA-256 and size of every listed file
    listed = {f"exported/mnist/{f['path']}" for f in card["files"]} | {"exported/mnist/tflite/1/model_card.json"}
    on_disk = {p.relative_to(ROOT).as_posix() for p in SHIPPED.rglob("*") if p.is_file()}
    assert on_disk == listed, f"unlisted or missing files: {on_disk ^ listed}; {REMAKE}"
    if (ROOT / ".git").exists():
        assert set(tracked_files()) - {"exported/.gitkeep"} == listed, "every shipped file is in git"
    total = sum((ROOT / p).stat().st_size for p in listed)
    assert total == record["total_bytes"] and total <= 8_000_000
    assert card["browser_decoder"]["weights"] == "float16" and card["shipped"]["made_by"].endswith("pretrained_mnist.py")


def test_shipped_decoders_load_and_generate_with_the_current_code(record):
    from tfvae.lite import check_decoder_shapes, decode, generate, load_decoder

    images, card = generate(SHIPPED, record["generation_check"]["n"], seed=record["generation_check"]["seed"])
    assert card["used"]["variant"] == "int8" and images.shape == (16, 28, 28, 1)
    assert 0 <= images.min() and images.max() <= 1
    assert images.mean() == pytest.approx(record["generation_check"]["mean_pixel"], abs=1e-4), REMAKE
    assert images.std() == pytest.approx(record["generation_check"]["std_pixel"], abs=1e-4), REMAKE
    browser = load_decoder(SHIPPED / "tflite" / "1" / "decoder_b1.tflite")
    check_decoder_shapes(browser, card, "decoder_b1.tflite")
    z = np.random.default_rng(0).standard_normal((8, card["latent_dim"])).astype(np.float32)
    device = decode(load_decoder(SHIPPED / "tflite" / "1" / "decoder_int8.tflite"), z)
    # The two shipped variants decode the same z to nearly the same pixels.
    assert np.abs(decode(browser, z) - device).mean() < 0.02


def test_card_figures_are_the_recorded_ones(record):
    card = json.loads((SHIPPED / "tflite" / "1" / "model_card.json").read_text())
    test = card["test_metrics"]
    assert test["protocol"]["split"] == "test" and test["protocol"]["num_images"] == 10000
    assert test["protocol"]["iw_samples"] == record["test"]["protocol"]["iw_samples"] == 1000
    for key in ("nll", "nll_stderr", "neg_elbo", "active_units"):
        assert test["metrics"][key] == record["test"][key], key
    assert card["shipped"]["max_abs_difference_to_float32_savedmodel"] == \
        record["max_abs_difference_to_float32_savedmodel"]


def test_demo_serves_the_shipped_export(monkeypatch, tmp_path):
    import tfvae.demo
    from tfvae.demo import routes
    from tfvae.errors import TfvaeError

    with monkeypatch.context() as m:  # LiteRT.js missing: the error says how to install it
        m.setattr(tfvae.demo, "MODULES", tmp_path / "no-litertjs")
        with pytest.raises(TfvaeError, match="npm ci"):
            routes(SHIPPED)
    require_litertjs()
    table = routes(SHIPPED)
    # The decoder is served from memory: the verified bytes of the shipped file.
    assert table["/model/decoder_b1.tflite"] == (SHIPPED / "tflite" / "1" / "decoder_b1.tflite").read_bytes()
