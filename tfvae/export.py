"""Export a run for serving (SavedModel, TF Serving layout) and for devices (TFLite/LiteRT).

    exported/NAME/
      decoder/<v>/       SavedModel; TF Serving's model base path is exported/NAME/decoder
      encoder/<v>/       SavedModel
      prior/<v>/         SavedModel of a VQ-VAE's autoregressive prior (``export_archives``)
      tflite/<v>/        decoder.tflite (float32, dynamic batch), decoder_b1.tflite (batch 1),
                         decoder_<quantization>.tflite, model_card.json
      onnx/<v>/          decoder.onnx, encoder.onnx (``--onnx``: tf2onnx from the SavedModels'
                         ``serving_default``, for onnxruntime and other runtimes outside TensorFlow)

Signatures (every graph is tensor in, tensor out; randomness stays outside, as an input):

* decoder ``serving_default``: ``z`` float32 [B, D] -> ``images`` float32 [B, H, W, C]
  (the likelihood mean, in [0, 1]) and the raw likelihood parameters (``logits``, or
  ``loc`` and ``scale``).
* decoder ``sample``: ``eps`` float32 [B, D], standard-normal noise, mapped through the
  prior (z = eps for N(0, I)) -> the same outputs plus ``z``. A hierarchical VAE's
  decoder input is the noise of its latent groups, concatenated top group first (each
  group's conditional prior p(z_l | z_<l) is inside the graph); its decoder SavedModel
  also has ``sample_groups``, taking each group's noise as its own input ``eps_1`` (top)
  … ``eps_L``. For a learned mixture prior
  (``--prior mog|vamp``) it also takes ``u`` float32 [B], uniform in [0, 1), which picks
  the component (inverse CDF); z = loc_c + scale_c · eps.
* encoder ``serving_default``: ``images`` float32 [B, H, W, C] in [0, 1] -> ``mean`` and
  ``scale`` of q(z|x), each [B, D].
* a family may export its own graphs (``model.export_archives()``): a VQ-VAE's decoder
  takes ``codes`` int32 [B, h, w], its encoder returns them, and ``prior`` maps ``codes`` to
  ``logits`` [B, h, w, K]; ``tflite/<v>/`` then holds ``decoder.tflite`` and ``prior.tflite``,
  ``onnx/<v>/`` the three graphs, and the model card ``decoder_input`` and the prior.

A version is staged in a hidden folder under exported/NAME and renamed into place, each
component last-to-first (onnx, tflite, prior, encoder, decoder), so an interrupted export leaves no
half-written version folder; the next export takes the next free number.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from . import __version__
from .config import atomic_write_text, json_text
from .lite import LITERT_RUNTIME, is_version, sha256_file
from .errors import TfvaeError
from .models import registry
from .quiet import native_output_silenced
from .rundir import load_model

QUANTIZATIONS = ("float16", "dynamic", "int8")
INT8_SCALES = ("per-channel", "per-tensor")
COMPONENTS = ("onnx", "tflite", "prior", "encoder", "decoder")  # renamed into place in this order
ONNX_OPSET = 17
CALIBRATION_DRAWS = 512  # prior draws that calibrate full-integer quantization


def _decoder_outputs(model, z):
    params = model.decoder(z, training=False)
    # Clipped to [0, 1] (a no-op on the values), which also makes "images" a tensor of its
    # own: for the Gaussian and the discretized logistic the mean *is* "loc", and a TFLite
    # signature whose two outputs share one tensor shows only one of the names (LiteRT.js).
    return {"images": tf.clip_by_value(model.likelihood_object.mean(params), 0.0, 1.0), **params}


def _decoder_archive(model, batch=None):
    d = model.latent_dim
    archive = keras.export.ExportArchive()
    archive.track(model.decoder)

    def serve(z):
        return _decoder_outputs(model, z)

    archive.add_endpoint("serving_default", serve, input_signature=[tf.TensorSpec([batch, d], tf.float32, name="z")])
    if model.config.prior == "standard":
        def sample(eps):
            z = eps  # the prior is N(0, I): z = 0 + 1 · eps
            return {**_decoder_outputs(model, z), "z": z}

        archive.add_endpoint("sample", sample, input_signature=[tf.TensorSpec([batch, d], tf.float32, name="eps")])
        if registry.of(model.config).latent_groups:
            dims = model.group_dims

            def sample_groups(*eps_groups):
                z = tf.concat(eps_groups, axis=-1)  # the decoder maps each group's noise through its prior
                return {**_decoder_outputs(model, z), "z": z}

            archive.add_endpoint("sample_groups", sample_groups, input_signature=[
                tf.TensorSpec([batch, g], tf.float32, name=f"eps_{i + 1}") for i, g in enumerate(dims)])
        return archive
    # A learned prior (mixture of Gaussians, or the VampPrior's mixture of its pseudo-inputs'
    # posteriors) is baked in as constants: component c = inverse CDF of u, z = loc_c + scale_c · eps.
    log_w, loc, scale = model.prior_mixture()
    weights = np.exp(log_w - np.logaddexp.reduce(log_w))
    cdf = tf.constant(np.cumsum(weights)[:-1].astype(np.float32))
    loc, scale = tf.constant(loc.astype(np.float32)), tf.constant(scale.astype(np.float32))

    def sample_mixture(eps, u):
        c = tf.reduce_sum(tf.cast(u[:, None] >= cdf[None, :], tf.int32), axis=1)
        z = tf.gather(loc, c) + tf.gather(scale, c) * eps
        return {**_decoder_outputs(model, z), "z": z}

    archive.add_endpoint("sample", sample_mixture, input_signature=[
        tf.TensorSpec([batch, d], tf.float32, name="eps"), tf.TensorSpec([batch], tf.float32, name="u")])
    return archive


def prior_card(model) -> dict:
    """The prior as the model card records it: N(0, I), or the mixture's parameters
    (weights [M], loc [M, D], scale [M, D]) so that a device can draw z without TensorFlow."""
    if registry.of(model.config).latent_groups:
        dims = list(model.group_dims)
        return {"kind": "hierarchical", "group_dims": dims,
                "description": f"top-down hierarchy of {len(dims)} latent groups: the decoder's input is the groups' "
                               "standard-normal noise, concatenated top group first (dimensions "
                               f"{', '.join(map(str, dims))}); each group's conditional prior is inside the graph"}
    if model.config.prior == "standard":
        return {"kind": "standard", "description": "standard normal N(0, I)"}
    log_w, loc, scale = model.prior_mixture()
    weights = np.exp(log_w - np.logaddexp.reduce(log_w))
    return {"kind": model.config.prior, "description": "mixture of diagonal Gaussians "
            + ("(VampPrior: posteriors of the learned pseudo-inputs)" if model.config.prior == "vamp" else "(learned)"),
            "weights": weights.tolist(), "loc": loc.tolist(), "scale": scale.tolist()}


def _encoder_archive(model):
    archive = keras.export.ExportArchive()
    archive.track(model.encoder)

    def serve(images):
        params = model.encoder(images, training=False)
        return {"mean": params["loc"], "scale": params["scale"]}

    shape = [None] + list(model.config.image_shape)
    archive.add_endpoint("serving_default", serve, input_signature=[tf.TensorSpec(shape, tf.float32, name="images")])
    return archive


def convert_tflite(saved_model_dir, quantization=None, latent_dim=None, seed=0, mixture: bool = False,
                   signatures=("serving_default", "sample"), int8_scales: str = "per-channel") -> bytes:
    """Convert a decoder SavedModel's signatures to a TFLite flatbuffer, builtin ops only.

    Args:
        quantization: None (float32), ``float16`` (float16 weights), ``dynamic``
            (dynamic-range int8 weights) or ``int8`` (full-integer, calibrated on
            ``CALIBRATION_DRAWS`` draws z ~ N(0, I); float32 inputs and outputs kept).
        mixture: the ``sample`` signature also takes ``u`` (learned mixture prior).
        signatures: the SavedModel's signatures to convert (a VQ-VAE's decoder and prior have
            ``serving_default`` alone).
        int8_scales: ``per-channel`` (TFLite's default: one scale per output channel of each
            weight) or ``per-tensor`` (one scale per weight tensor: a smaller file, since every
            signature's subgraph stores its own copy of the scales; the converter's
            ``_experimental_disable_per_channel``). Used by ``int8`` only.

    Returns:
        The model bytes.

    Raises:
        RuntimeError / ConverterError: an op has no builtin TFLite kernel (no Flex ops).
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=list(signatures))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "int8":
        rng = np.random.default_rng(seed)

        def representative():
            for _ in range(CALIBRATION_DRAWS):
                z = rng.standard_normal((1, latent_dim)).astype(np.float32)
                yield "serving_default", {"z": z}  # both signatures share the decoder's ops
                yield "sample", {"eps": z, "u": rng.uniform(size=(1,)).astype(np.float32)} if mixture else {"eps": z}

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter._experimental_disable_per_channel = int8_scales == "per-tensor"
    elif quantization is not None:
        raise TfvaeError(f"--quantize must be one of {', '.join(QUANTIZATIONS)}, got {quantization!r}")
    with warnings.catch_warnings(), native_output_silenced(fds=(1, 2)):
        # The calibrator uses the deprecated tf.lite.Interpreter internally and prints its
        # own progress; neither is news to the user.
        warnings.simplefilter("ignore", UserWarning)
        return converter.convert()


def convert_onnx(saved_model_dir, out_path, input_name: str, opset: int = ONNX_OPSET) -> int:
    """Convert a SavedModel's ``serving_default`` signature to ONNX with tf2onnx.

    The ONNX graph has the signature's input (``z`` [B, D] for the decoder, ``images``
    [B, H, W, C] for the encoder; float32, batch dynamic) and outputs, under the same names.

    Args:
        saved_model_dir: an exported decoder or encoder SavedModel.
        out_path: the ``.onnx`` file to write.
        input_name: the signature's single input.
        opset: the ONNX opset (17: onnxruntime 1.12 and later).

    Returns:
        The file's size in bytes.

    Raises:
        TfvaeError: tf2onnx is not installed.
    """
    try:
        import tf2onnx
    except ImportError:
        raise TfvaeError("--onnx needs tf2onnx and onnx: pip install -r requirements.txt") from None
    import logging

    loaded = tf.saved_model.load(str(saved_model_dir))  # held: the signature refers to its variables
    spec = loaded.signatures["serving_default"].structured_input_signature[1][input_name]

    @tf.function
    def serve(x):
        return loaded.signatures["serving_default"](**{input_name: x})

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    with native_output_silenced(fds=(1, 2)):
        tf2onnx.convert.from_function(serve, input_signature=[tf.TensorSpec(spec.shape, spec.dtype, name=input_name)],
                                      opset=opset, output_path=str(out_path))
    return Path(out_path).stat().st_size


def next_version(export_dir: Path) -> int:
    """1 + the highest integer version of any component (1 for a new export)."""
    versions = [int(p.name) for c in COMPONENTS if (export_dir / c).is_dir()
                for p in (export_dir / c).iterdir() if is_version(p.name)]
    return max(versions, default=0) + 1


def _file_table(root: Path, prefix: str):
    return [{"path": f"{prefix}/{p.relative_to(root).as_posix()}", "bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(root.rglob("*")) if p.is_file()]


def export_run(run_dir, out_root="exported", name=None, tflite=False, quantize=(), checkpoint="best",
               onnx=False, browser_weights="float32", int8_scales="per-channel") -> dict:
    """Export a run's encoder and decoder as a new version under ``out_root/name``.

    Args:
        run_dir: a run directory written by ``train``.
        out_root: export root (default ``exported``).
        name: export name (default: the run directory's name).
        tflite: also write the TFLite decoders.
        quantize: quantized TFLite variants to add (``float16``, ``dynamic``, ``int8``).
        onnx: also write ``onnx/<v>/decoder.onnx`` and ``encoder.onnx`` (see :func:`convert_onnx`).
        browser_weights: ``float32`` or ``float16`` weights in ``decoder_b1.tflite`` (the
            browser demo's decoder; float16 halves its download).
        int8_scales: ``per-channel`` or ``per-tensor`` scales in ``decoder_int8.tflite``
            (see :func:`convert_tflite`).

    Returns:
        The model card (also written to ``tflite/<v>/model_card.json``), with
        ``export_dir`` and ``version``.

    Raises:
        TfvaeError: missing or incomplete run, bad name, unknown quantization or int8
            scales, ``--quantize`` without ``--tflite``, or ``--int8-scales per-tensor``
            without ``--quantize int8``.
    """
    for q in quantize:
        if q not in QUANTIZATIONS:
            raise TfvaeError(f"--quantize must be one of {', '.join(QUANTIZATIONS)}, got {q!r}")
    if quantize and not tflite:
        raise TfvaeError("--quantize needs --tflite")
    if browser_weights not in ("float32", "float16"):
        raise TfvaeError(f"--browser-weights must be float32 or float16, got {browser_weights!r}")
    if int8_scales not in INT8_SCALES:
        raise TfvaeError(f"--int8-scales must be one of {', '.join(INT8_SCALES)}, got {int8_scales!r}")
    if int8_scales != "per-channel" and "int8" not in quantize:
        raise TfvaeError("--int8-scales needs --quantize int8")
    run_dir = Path(run_dir)
    from .rundir import read_config

    if registry.of(read_config(run_dir)).discrete_codes and (quantize or browser_weights != "float32"):
        raise TfvaeError("--quantize and --browser-weights: a model with discrete codes is exported with float32 "
                         "decoder and prior only (int8 calibration draws z ~ N(0, I); the browser demo decodes z)")
    model, cfg = load_model(run_dir, checkpoint)
    from .evaluate import check_finite_weights

    check_finite_weights(model, run_dir, checkpoint)
    read_evaluation(run_dir)  # a damaged eval.json is refused before anything is written
    name = name or run_dir.resolve().name
    if not name or "/" in name or name.startswith("."):
        raise TfvaeError(f"--name {name!r}: expected a plain folder name")
    export_dir = Path(out_root) / name
    try:
        export_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TfvaeError(f"--out {out_root}: cannot create {export_dir} ({exc.strerror})") from None
    from .locks import folder_lock

    # One export of a name at a time: a second one waits, then takes the next version.
    with folder_lock(export_dir, f"export {name}", wait_seconds=600,
                     say=lambda m: print(m, file=sys.stderr, flush=True)):
        return _export_version(model, cfg, run_dir, export_dir, tflite, quantize, checkpoint, onnx, browser_weights,
                               int8_scales)


def _export_version(model, cfg, run_dir, export_dir, tflite, quantize, checkpoint, onnx=False,
                    browser_weights="float32", int8_scales="per-channel") -> dict:
    for stale in export_dir.glob(".staging-*"):  # left by a killed export; we hold the lock, so none is live
        shutil.rmtree(stale, ignore_errors=True)
    version = next_version(export_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=export_dir))
    own = model.export_archives()
    try:
        if own is not None:  # the family's own graphs (a VQ-VAE: decoder of codes, encoder, prior)
            card = _export_own(model, cfg, run_dir, staging, own, version, checkpoint, tflite, onnx)
        else:
            card = _export_standard(model, cfg, run_dir, staging, version, checkpoint, tflite, quantize, onnx,
                                    browser_weights, int8_scales)
        from .config import umask_mode

        for folder in [staging, *(p for p in staging.rglob("*") if p.is_dir())]:
            os.chmod(folder, umask_mode(0o777))  # mkdtemp makes 0700; TF Serving may run as another user
        for component in COMPONENTS:
            if not (staging / component).exists():
                continue
            target = export_dir / component
            target.mkdir(exist_ok=True)
            os.replace(staging / component, target / str(version))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    card["export_dir"] = str(export_dir)
    return card


def _export_own(model, cfg, run_dir, staging: Path, archives: dict, version: int, checkpoint: str, tflite: bool,
                onnx: bool) -> dict:
    """Write a family's own archives (``model.export_archives()``), their TFLite and ONNX
    conversions (every graph's ``serving_default``) and the model card, into ``staging``."""
    inputs = {}
    for component, archive in archives.items():
        archive.write_out(str(staging / component), verbose=False)
        inputs[component] = next(iter(tf.saved_model.load(str(staging / component)).signatures["serving_default"]
                                      .structured_input_signature[1]))
    lite = staging / "tflite"
    lite.mkdir()
    if tflite:
        for component in archives:
            if component != "encoder":
                (lite / f"{component}.tflite").write_bytes(convert_tflite(staging / component,
                                                                          signatures=("serving_default",)))
    if onnx:
        (staging / "onnx").mkdir()
        for component in archives:
            convert_onnx(staging / component, staging / "onnx" / f"{component}.onnx", inputs[component])
    card = _model_card(run_dir, cfg, staging, version, checkpoint)
    card.update(model.export_card())
    atomic_write_text(lite / "model_card.json", json_text(card))
    return card


def _export_standard(model, cfg, run_dir, staging: Path, version: int, checkpoint: str, tflite: bool, quantize,
                     onnx: bool, browser_weights: str, int8_scales: str = "per-channel") -> dict:
    """Write the decoder of z (``serving_default`` and ``sample``), the encoder, their TFLite
    and ONNX conversions and the model card into ``staging``."""
    _decoder_archive(model).write_out(str(staging / "decoder"), verbose=False)
    _encoder_archive(model).write_out(str(staging / "encoder"), verbose=False)
    lite = staging / "tflite"
    lite.mkdir()
    if tflite:
        (lite / "decoder.tflite").write_bytes(convert_tflite(staging / "decoder"))
        fixed = staging / "decoder_b1_savedmodel"
        _decoder_archive(model, batch=1).write_out(str(fixed), verbose=False)
        (lite / "decoder_b1.tflite").write_bytes(
            convert_tflite(fixed, None if browser_weights == "float32" else browser_weights))
        shutil.rmtree(fixed)
        for q in quantize:
            data = convert_tflite(staging / "decoder", q, latent_dim=model.latent_dim, seed=cfg.train.seed,
                                  mixture=model.config.prior != "standard", int8_scales=int8_scales)
            (lite / f"decoder_{q}.tflite").write_bytes(data)
    if onnx:
        (staging / "onnx").mkdir()
        convert_onnx(staging / "decoder", staging / "onnx" / "decoder.onnx", "z")
        convert_onnx(staging / "encoder", staging / "onnx" / "encoder.onnx", "images")
    card = _model_card(run_dir, cfg, staging, version, checkpoint)
    card["prior"] = prior_card(model)
    if tflite:
        card["browser_decoder"] = {"file": "decoder_b1.tflite", "weights": browser_weights, "batch": 1}
    if "int8" in quantize:
        card["int8_scales"] = int8_scales
    atomic_write_text(lite / "model_card.json", json_text(card))
    return card


def read_evaluation(run_dir: Path):
    """The run's ``eval.json`` as a dict, or None when there is none.

    Raises:
        TfvaeError: the file exists but is damaged (not JSON, or not an evaluation report).
    """
    eval_path = Path(run_dir) / "eval.json"
    if not eval_path.is_file():
        return None
    try:
        evaluation = json.loads(eval_path.read_text())
        if not isinstance(evaluation, dict) or not isinstance(evaluation.get("metrics"), dict) \
                or not isinstance(evaluation.get("protocol"), dict):
            raise ValueError("not an evaluation report")
    except (OSError, ValueError, UnicodeDecodeError):
        raise TfvaeError(f"{eval_path} is damaged (the model card would carry it): run python cli.py evaluate "
                         f"{run_dir} again, or remove it") from None
    return evaluation


def _model_card(run_dir: Path, cfg, staging: Path, version: int, checkpoint: str) -> dict:
    evaluation = read_evaluation(run_dir)
    if evaluation is not None:
        evaluation["metrics"].pop("activity_per_dim", None)
    files = []
    for component in COMPONENTS:
        if (staging / component).exists():
            files += _file_table(staging / component, f"{component}/{version}")
    return {
        "version": version,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source_run": str(run_dir.resolve()),
        "checkpoint": checkpoint,
        "dataset": cfg.data.dataset,
        "class_names": cfg.meta.get("class_names", []),
        "image_shape": list(cfg.model.image_shape),
        "image_size": list(cfg.model.image_shape[:2]),
        "channels": int(cfg.model.image_shape[2]),
        "latent_dim": cfg.model.latent_dim,
        "likelihood": cfg.model.likelihood,
        "litert_runtime": dict(LITERT_RUNTIME),
        "config": cfg.to_dict(),
        "test_metrics": evaluation,
        "files": files,
        "tfvae_version": __version__,
        "tensorflow_version": tf.__version__,
    }
