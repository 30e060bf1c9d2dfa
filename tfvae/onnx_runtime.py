"""Decoding with onnxruntime and numpy only (no TensorFlow): the ONNX path of ``generate``.

``export --onnx`` writes ``onnx/<v>/decoder.onnx`` (tf2onnx, from the decoder SavedModel's
``serving_default``): input ``z`` float32 [B, D], outputs ``images`` float32 [B, H, W, C]
in [0, 1] and the likelihood's raw parameters. Its model card is the version's
``tflite/<v>/model_card.json``, which lists the ONNX files with their SHA-256.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import TfvaeError
from .lite import is_version


def onnx_dir(export_dir, version=None) -> Path:
    """EXPORT_DIR/onnx/<v> for the given or the highest version that holds ``decoder.onnx``.

    Raises:
        TfvaeError: ``export_dir`` is not a folder, or it has no ONNX decoder (names the command that makes one).
    """
    export_dir = Path(export_dir)
    if not export_dir.is_dir():
        raise TfvaeError(f"{export_dir} is not a folder")
    root = export_dir / "onnx"
    versions = sorted(int(p.name) for p in root.iterdir() if is_version(p.name) and (p / "decoder.onnx").is_file()) \
        if root.is_dir() else []
    if version is None:
        if not versions:
            raise TfvaeError(f"{export_dir} has no ONNX decoder (export it with: python cli.py export RUN_DIR --onnx)")
        version = versions[-1]
    if version not in versions:
        raise TfvaeError(f"{export_dir} has no ONNX version {version} (versions: {versions})")
    return root / str(version)


def onnx_session(path, card: dict | None = None, threads: int = 1, input_name: str | None = None,
                 output_name: str = "images"):
    """An onnxruntime ``InferenceSession`` (CPU, ``threads`` intra-op threads) for a decoder ``.onnx``
    (or, with ``input_name``/``output_name``, another exported model: a VQ-VAE's prior ``codes`` -> ``logits``).

    Raises:
        TfvaeError: onnxruntime is not installed, the file is not a usable ONNX model, or
            its input (``z``, or the card's ``decoder_input``) / ``images`` output differ from
            the model card's shapes.
    """
    from .lite import decoder_input

    try:
        import onnxruntime as ort
    except ImportError:
        raise TfvaeError("--runtime onnx needs onnxruntime: pip install -r requirements.txt") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 (onnxruntime raises its own exception types)
        raise TfvaeError(f"{path}: not a usable ONNX decoder ({' '.join(str(exc).split())[:160]})") from None
    inputs = {i.name: i.shape for i in session.get_inputs()}
    outputs = {o.name: o.shape for o in session.get_outputs()}
    name, shape, _ = decoder_input(card) if card is not None else (input_name or "z", None, None)
    if name not in inputs or output_name not in outputs:
        raise TfvaeError(f"{path}: expected input {name} and output {output_name}, found {sorted(inputs)} -> "
                         f"{sorted(outputs)}")
    if card is not None:
        z, images = list(inputs[name][1:]), list(outputs["images"][1:])
        if z != shape or images != list(card["image_shape"]):
            raise TfvaeError(f"{path}: decoder maps {name} {z} to images {images}, but the model card says {name} "
                             f"{shape} to images {card['image_shape']}")
    return session


def run_decoder(session, z: np.ndarray, output: str = "images", name: str = "z") -> np.ndarray:
    """Run the model on its input ``name`` (z float32 [B, D], or ``codes`` int32 [B, h, w]);
    returns the ``output`` tensor (``images``: float32 [B, H, W, C])."""
    dtype = np.int32 if name == "codes" else np.float32
    return session.run([output], {name: np.asarray(z, dtype)})[0]
