"""The browser demo end to end: `cli.py demo` serves the page on 127.0.0.1, Debian's headless
Chromium (driven by playwright-core from npm) runs the batch-1 TFLite decoder with LiteRT.js,
and the canvas must show what Python's LiteRT computes for the same z."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, require_litertjs, run_cli
from test_cli import assert_one_line_error

WEB = ROOT / "demo" / "web"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser_tools():
    missing = [what for what, ok in (
        ("node", shutil.which("node")),
        ("LiteRT.js and playwright-core (cd demo/web && npm ci)", (WEB / "node_modules" / "playwright-core").is_dir()
         and (WEB / "node_modules" / "@litertjs" / "core").is_dir()),
        (f"Chromium at {CHROMIUM} (apt-get install chromium)", Path(CHROMIUM).exists()),
    ) if not ok]
    if missing:
        message = "browser test needs: " + "; ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def colour_export_dir(tmp_path_factory):
    """A colour model (16×16×3, discretized logistic) trained briefly on rendered colour
    gradients in an image folder, exported with its TFLite decoders."""
    from PIL import Image

    root = tmp_path_factory.mktemp("colour_demo")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16] / 15.0
    for i in range(96):
        a = rng.integers(0, 2, 3).astype(float)  # a gradient between two opposite corners of the colour cube
        b = 1 - a
        t = (xx if i % 2 else yy)[..., None]
        Image.fromarray(np.round(255 * ((1 - t) * a + t * b)).astype(np.uint8)).save(root / f"{i:03d}.png")
    run = root / "run"
    result = run_cli("train", "--model", "vae", "--image-dir", root, "--likelihood", "logistic", "--epochs", 12, "--batch-size", 16,
                     "--learning-rate", 0.003,
                     "--validation-size", 16, "--latent-dim", 4, "--conv-filters", "8,16", "--hidden-units", 32,
                     "--run-dir", run)
    assert result.returncode == 0, result.stderr[-2000:]
    result = run_cli("export", run, "--name", "colour", "--out", root / "exported", "--tflite")
    assert result.returncode == 0, result.stderr[-2000:]
    card = json.loads(next((root / "exported" / "colour" / "tflite").glob("*/model_card.json")).read_text())
    assert card["image_size"] == [16, 16] and card["channels"] == 3 and card["class_names"] == []
    return root / "exported" / "colour"


@pytest.fixture(params=["shipped", "colour"])
def demo_export(request):
    """The shipped exported/mnist (grey, float16 browser weights) and a colour float32 export."""
    if request.param == "shipped":
        return ROOT / "exported" / "mnist"
    return request.getfixturevalue("colour_export_dir")


@pytest.fixture()
def demo_server(demo_export, browser_tools):
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "demo", str(demo_export), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline()
    assert "http://127.0.0.1:" in line, line + proc.stderr.read()
    url = re.search(r"http://127\.0\.0\.1:\d+/", line).group(0)
    yield url, proc
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.slow
def test_browser_demo_matches_python_litert(demo_server, demo_export, tmp_path):
    """Grey (the shipped MNIST export) and colour (16×16×3) decoders: the canvas shows Python's pixels."""
    from tfvae.lite import decode, load_decoder, read_card, tflite_dir

    url, _ = demo_server
    export_dir = demo_export
    latent_dim = read_card(tflite_dir(export_dir))["latent_dim"]
    z = np.random.default_rng(11).standard_normal(latent_dim).astype(np.float32)
    screenshot = tmp_path / "demo.png"
    result = subprocess.run(["node", "test/e2e.mjs", url, json.dumps(z.tolist()), str(screenshot)],
                            capture_output=True, text=True, cwd=WEB, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    findings = json.loads(result.stdout.strip().splitlines()[-1])
    assert findings["status"] == "ready", findings
    assert findings["view_std"] > 2, "the canvas is blank"  # (one flat colour: 0)
    assert findings["slider_changed_pixels"] > 0, "moving a slider did not change the image"
    assert findings["strip_std"] > 2, "the interpolation strip is blank"
    expected = decode(load_decoder(tflite_dir(export_dir) / "decoder_b1.tflite"), z[None])[0]  # [H, W, C]
    h, w, c = expected.shape
    decoded = np.asarray(findings["decoded"], dtype=np.float32).reshape(expected.shape)
    assert np.abs(decoded - expected).max() <= 1 / 255
    canvas = np.asarray(findings["raw_pixels"], dtype=np.float32).reshape(h, w, 4)[..., 0:c] / 255
    print("max |canvas − Python LiteRT| =", float(np.abs(canvas - expected).max()))
    assert np.abs(canvas - expected).max() <= 1 / 255
    assert screenshot.read_bytes()[:4] == b"\x89PNG"


def test_demo_bad_input(tmp_path, export_dir):
    assert_one_line_error(run_cli("demo", tmp_path), "no TFLite decoder")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        require_litertjs()  # the port is checked after the export and LiteRT.js: CI must reach it
        assert_one_line_error(run_cli("demo", export_dir, "--port", port), f"--port {port}")
