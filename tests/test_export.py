"""Export: TF Serving layout and versions, the serving contract (signatures, names, shapes,
dtypes), TFLite parity with the SavedModel, LiteRT generation without TensorFlow, bad input."""

import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT
from conftest import run_cli
from test_cli import assert_one_line_error

pytestmark = pytest.mark.slow


def tree_digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}  # the lock holds the last pid


def test_layout_and_new_versions_never_overwrite(run_dir, export_dir, tmp_path):
    for path in ("decoder/1/saved_model.pb", "encoder/1/saved_model.pb", "tflite/1/decoder.tflite",
                 "onnx/1/decoder.onnx", "onnx/1/encoder.onnx",
                 "tflite/1/decoder_b1.tflite", "tflite/1/decoder_float16.tflite", "tflite/1/decoder_dynamic.tflite",
                 "tflite/1/decoder_int8.tflite", "tflite/1/model_card.json"):
        assert (export_dir / path).is_file(), path
    assert not list(export_dir.glob(".staging*"))
    exported = tmp_path / "exported"  # a copy: the session's export is shared with other tests
    shutil.copytree(export_dir, exported / "m")
    before = tree_digest(exported / "m")
    result = run_cli("export", run_dir, "--name", "m", "--out", exported)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (exported / "m" / "decoder" / "2" / "saved_model.pb").is_file()
    after = tree_digest(exported / "m")
    assert all(after[k] == v for k, v in before.items())  # version 1 untouched


def test_model_card(export_dir):
    card = json.loads((export_dir / "tflite/1/model_card.json").read_text())
    assert card["latent_dim"] == 8 and card["image_shape"] == [28, 28, 1] and card["likelihood"] == "bernoulli"
    assert card["dataset"] == "mnist" and card["class_names"][:2] == ["0", "1"]
    assert card["config"]["train"]["epochs"] == 2 and card["tensorflow_version"] == tf.__version__
    files = {f["path"]: f for f in card["files"]}
    f = files["tflite/1/decoder.tflite"]
    data = (export_dir / "tflite/1/decoder.tflite").read_bytes()
    assert f["bytes"] == len(data) and f["sha256"] == hashlib.sha256(data).hexdigest()
    assert "decoder/1/saved_model.pb" in files and "encoder/1/saved_model.pb" in files
    sizes = {q: files[f"tflite/1/decoder_{q}.tflite"]["bytes"] / f["bytes"] for q in ("float16", "int8")}
    print("size ratios to float32:", sizes)
    assert sizes["float16"] <= 0.55 and sizes["int8"] <= 0.30
    from tfvae.lite import LITERT_RUNTIME, generate

    assert card["litert_runtime"]["num_threads"] == LITERT_RUNTIME["num_threads"] >= 1
    _, used = generate(export_dir, 2, variant="float32")
    assert used["used"]["num_threads"] == card["litert_runtime"]["num_threads"]  # generate runs what the card says


def prior_draws(n=256, d=8, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_decoder_serving_signatures(export_dir):
    loaded = tf.saved_model.load(str(export_dir / "decoder" / "1"))
    serve = loaded.signatures["serving_default"]
    out = serve(z=tf.constant(prior_draws(4)))
    assert set(out) == {"images", "logits"}
    assert out["images"].shape == (4, 28, 28, 1) and out["images"].dtype == tf.float32
    images = out["images"].numpy()
    assert images.min() >= 0 and images.max() <= 1
    np.testing.assert_allclose(images, tf.sigmoid(out["logits"]).numpy(), atol=1e-6)
    sampled = loaded.signatures["sample"](eps=tf.constant(prior_draws(4)))
    assert set(sampled) == {"images", "logits", "z"}
    np.testing.assert_allclose(sampled["images"].numpy(), images, atol=1e-6)  # N(0, I) prior: z = eps


def test_saved_model_cli_lists_the_contract(export_dir):
    text = subprocess.run([sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--dir",
                           str(export_dir / "decoder" / "1"), "--all"], capture_output=True, text=True).stdout
    for fragment in ("signature_def['serving_default']", "inputs['z']", "outputs['images']", "outputs['logits']",
                     "signature_def['sample']", "inputs['eps']", "shape: (-1, 8)", "shape: (-1, 28, 28, 1)",
                     "DT_FLOAT"):
        assert fragment in text, fragment
    text = subprocess.run([sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--dir",
                           str(export_dir / "encoder" / "1"), "--tag_set", "serve", "--signature_def",
                           "serving_default"], capture_output=True, text=True).stdout
    for fragment in ("inputs['images']", "outputs['mean']", "outputs['scale']", "(-1, 28, 28, 1)", "(-1, 8)"):
        assert fragment in text, fragment


def test_encoder_saved_model_matches_the_in_memory_encoder(run_dir, export_dir, tfds_dir):
    from tfvae.rundir import load_model

    model, _ = load_model(run_dir)
    x = tf.cast(tf.random.stateless_uniform((16, 28, 28, 1), seed=[1, 2]) > 0.7, tf.float32)
    out = tf.saved_model.load(str(export_dir / "encoder" / "1")).signatures["serving_default"](images=x)
    ref = model.encoder(x)
    np.testing.assert_allclose(out["mean"].numpy(), ref["loc"].numpy(), atol=1e-5)
    np.testing.assert_allclose(out["scale"].numpy(), ref["scale"].numpy(), atol=1e-5)


def test_tflite_parity_with_the_saved_model(export_dir):
    from tfvae.lite import decode, load_decoder

    z = prior_draws()
    reference = tf.saved_model.load(str(export_dir / "decoder" / "1")).signatures["serving_default"](
        z=tf.constant(z))["images"].numpy()
    folder = export_dir / "tflite" / "1"
    errors = {}
    for name in ("decoder", "decoder_b1", "decoder_float16", "decoder_dynamic", "decoder_int8"):
        out = decode(load_decoder(folder / f"{name}.tflite"), z)
        errors[name] = (float(np.abs(out - reference).max()), float(np.abs(out - reference).mean()))
    print("max / mean |Δ| against the SavedModel:", errors)
    assert errors["decoder"][0] <= 1e-5 and errors["decoder_b1"][0] <= 1e-5
    assert errors["decoder_float16"][0] <= 1e-2
    assert errors["decoder_dynamic"][1] <= 0.05 and errors["decoder_int8"][1] <= 0.05


def test_int8_with_per_tensor_scales_is_smaller_and_decodes_like_per_channel(export_dir):
    """``--int8-scales per-tensor``: one scale per quantized weight tensor (per-channel has one
    per output channel), a smaller file, and the same decoder within int8's tolerance."""
    from tensorflow.lite.tools import flatbuffer_utils

    from tfvae.export import convert_tflite
    from tfvae.lite import decode, load_decoder

    saved = export_dir / "decoder" / "1"
    per_tensor = convert_tflite(saved, "int8", latent_dim=8, int8_scales="per-tensor")
    per_channel = (export_dir / "tflite" / "1" / "decoder_int8.tflite").read_bytes()
    assert len(per_tensor) < len(per_channel)

    def most_scales(data):
        model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
        return max(len(t.quantization.scale) for g in model.subgraphs for t in g.tensors
                   if t.type == 9 and t.quantization is not None and t.quantization.scale is not None)  # 9: INT8

    assert most_scales(per_tensor) == 1 and most_scales(per_channel) > 1
    z = prior_draws()
    reference = tf.saved_model.load(str(saved)).signatures["serving_default"](z=tf.constant(z))["images"].numpy()
    path = export_dir.parent / "per_tensor_int8.tflite"
    path.write_bytes(per_tensor)
    assert np.abs(decode(load_decoder(path), z) - reference).mean() <= 0.05


def test_onnx_parity_with_the_saved_model(export_dir):
    """tf2onnx's decoder and encoder, run by onnxruntime, reproduce the SavedModels."""
    import onnxruntime as ort

    from tfvae.onnx_runtime import onnx_session, run_decoder

    z = prior_draws()
    saved = tf.saved_model.load(str(export_dir / "decoder" / "1")).signatures["serving_default"](z=tf.constant(z))
    session = onnx_session(export_dir / "onnx" / "1" / "decoder.onnx")
    images = run_decoder(session, z)
    print("max |ONNX − SavedModel| images:", float(np.abs(images - saved["images"].numpy()).max()))
    assert images.shape == (256, 28, 28, 1)
    np.testing.assert_allclose(images, saved["images"].numpy(), atol=1e-5)
    np.testing.assert_allclose(run_decoder(session, z, "logits"), saved["logits"].numpy(), atol=1e-4, rtol=1e-5)
    x = (np.random.default_rng(3).uniform(size=(16, 28, 28, 1)) > 0.7).astype(np.float32)
    encoder = ort.InferenceSession(str(export_dir / "onnx" / "1" / "encoder.onnx"), providers=["CPUExecutionProvider"])
    mean, scale = encoder.run(["mean", "scale"], {"images": x})
    ref = tf.saved_model.load(str(export_dir / "encoder" / "1")).signatures["serving_default"](images=tf.constant(x))
    np.testing.assert_allclose(mean, ref["mean"].numpy(), atol=1e-5)
    np.testing.assert_allclose(scale, ref["scale"].numpy(), atol=1e-5, rtol=1e-5)
    card = json.loads((export_dir / "tflite/1/model_card.json").read_text())
    files = {f["path"]: f for f in card["files"]}
    data = (export_dir / "onnx/1/decoder.onnx").read_bytes()
    assert files["onnx/1/decoder.onnx"]["sha256"] == hashlib.sha256(data).hexdigest()


def generate_without_tensorflow(export_dir, out, *options):
    """Run ``cli.py generate EXPORT_DIR -n 9 OPTIONS --out OUT`` in a fresh process that must
    never import TensorFlow; returns its stdout."""
    argv = ["cli.py", "generate", str(export_dir), "-n", "9", *options, "--out", str(out)]
    script = (
        "import runpy, sys\n"
        f"sys.argv = {argv!r}\n"
        "try:\n    runpy.run_path('cli.py', run_name='__main__')\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'tensorflow' not in sys.modules, 'generate imported tensorflow'\n"
        "print('no tensorflow')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no tensorflow" in result.stdout
    assert out.read_bytes()[:4] == b"\x89PNG"
    return result.stdout


def test_generate_with_onnxruntime_without_tensorflow(export_dir, tmp_path):
    stdout = generate_without_tensorflow(export_dir, tmp_path / "grid.png", "--runtime", "onnx")
    assert "onnxruntime, decoder.onnx" in stdout
    from tfvae.lite import generate

    litert, _ = generate(export_dir, 9, seed=0, variant="float32")
    onnx, card = generate(export_dir, 9, seed=0, runtime="onnx")
    assert card["used"]["runtime"] == "onnxruntime"
    np.testing.assert_allclose(onnx, litert, atol=1e-5)  # the same z, the same float32 decoder
    assert_one_line_error(run_cli("generate", export_dir, "--runtime", "onnx", "--variant", "int8", "--out",
                                  tmp_path / "b.png"), "--runtime onnx")


def test_generate_uses_litert_without_tensorflow(export_dir, tmp_path):
    assert "litert, decoder_int8.tflite" in generate_without_tensorflow(export_dir, tmp_path / "grid.png",
                                                                        "--variant", "int8")


def test_generate_bad_input(export_dir, tmp_path):
    assert_one_line_error(run_cli("generate", export_dir, "-n", 0, "--out", tmp_path / "a.png"), "-n")
    assert_one_line_error(run_cli("generate", export_dir, "--variant", "int4", "--out", tmp_path / "a.png"),
                          "--variant")
    assert_one_line_error(run_cli("generate", tmp_path, "--out", tmp_path / "a.png"), "no TFLite decoder")
    corrupt = tmp_path / "corrupt"
    (corrupt / "tflite" / "1").mkdir(parents=True)
    (corrupt / "tflite" / "1" / "model_card.json").write_text(json.dumps({"latent_dim": 8}))
    data = (export_dir / "tflite" / "1" / "decoder.tflite").read_bytes()
    (corrupt / "tflite" / "1" / "decoder.tflite").write_bytes(data[: len(data) // 3])
    assert_one_line_error(run_cli("generate", corrupt, "--out", tmp_path / "a.png"), "model_card.json")
    # With the export's real card, the truncated file fails its SHA-256 check, by name.
    (corrupt / "tflite" / "1" / "model_card.json").write_text((export_dir / "tflite/1/model_card.json").read_text())
    assert_one_line_error(run_cli("generate", corrupt, "--out", tmp_path / "a.png"), "decoder.tflite", "SHA-256")
    assert not (tmp_path / "a.png").exists()


def test_export_bad_input(run_dir, tmp_path):
    assert_one_line_error(run_cli("export", tmp_path / "missing", "--out", tmp_path / "x"), "not a folder")
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "config.json").write_text((run_dir / "config.json").read_text())
    assert_one_line_error(run_cli("export", incomplete, "--out", tmp_path / "x"), "checkpoints")
    assert_one_line_error(run_cli("export", run_dir, "--out", tmp_path / "x", "--quantize", "int8"), "--tflite")
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").rglob("saved_model.pb"))
