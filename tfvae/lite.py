"""On-device-style generation with LiteRT (``ai-edge-litert``) or onnxruntime, and numpy only.

This module never imports TensorFlow: it is what a phone or a small server would run.
Noise z ~ p(z) is drawn with numpy, outside the graph, and fed to the exported
decoder's ``serving_default`` signature (input ``z`` [B, D] -> ``images`` [B, H, W, C]),
as ``tflite/<v>/decoder*.tflite`` (LiteRT) or ``onnx/<v>/decoder.onnx`` (onnxruntime). A
VQ-VAE's export holds its autoregressive prior too (``prior.tflite`` / ``prior.onnx``,
codes [B, h, w] -> logits [B, h, w, K]): the codes are drawn position by position in numpy
(:func:`sample_code_grids`, h·w prior calls) and decoded from ``codes`` int32 [B, h, w].
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import TfvaeError
from .quiet import native_output_silenced

VARIANTS = {"float32": "decoder.tflite", "float16": "decoder_float16.tflite",
            "dynamic": "decoder_dynamic.tflite", "int8": "decoder_int8.tflite"}
RUNTIMES = ("litert", "onnx")
# How generate runs a TFLite decoder: LiteRT's Interpreter with its default XNNPACK delegate
# and 2 threads, the fastest of the configurations bench/export_bench.py times at batch 1
# (XNNPACK on and off, 1 and 2 threads, the CompiledModel API; README "Deploy"). Each
# export's model card records it under "litert_runtime".
LITERT_RUNTIME = {"api": "Interpreter", "delegate": "XNNPACK", "num_threads": 2,
                  "evidence": "bench/results/export_bench.json: litert analysis, configurations"}


def pick_variant(folder, variant: str = "auto") -> str:
    """The TFLite variant to use: ``variant`` itself, or for ``auto`` the first of
    float32, float16, dynamic, int8 that the version holds (a shipped export may hold
    only quantized decoders).

    Raises:
        TfvaeError: an unknown variant, or ``auto`` and no dynamic-batch decoder in ``folder``.
    """
    if variant != "auto":
        if variant not in VARIANTS:
            raise TfvaeError(f"--variant must be auto or one of {', '.join(VARIANTS)}, got {variant!r}")
        return variant
    for name, file in VARIANTS.items():
        if (Path(folder) / file).is_file():
            return name
    raise TfvaeError(f"{folder} has no dynamic-batch TFLite decoder (decoder[_VARIANT].tflite)")


def is_version(name: str) -> bool:
    """A version folder's name: ASCII digits only (``"3"``; not ``"²"``, ``"-1"`` or ``"03a"``)."""
    return name.isascii() and name.isdigit()


def tflite_dir(export_dir, version=None) -> Path:
    """EXPORT_DIR/tflite/<v> for the given or the highest version.

    Raises:
        TfvaeError: no TFLite export in ``export_dir``.
    """
    root = Path(export_dir) / "tflite"
    if not Path(export_dir).is_dir():
        raise TfvaeError(f"{export_dir} is not a folder")
    versions = sorted(int(p.name) for p in root.iterdir() if is_version(p.name)) if root.is_dir() else []
    if version is None:
        versions = [v for v in versions if any((root / str(v)).glob("decoder*.tflite"))]
        if not versions:
            raise TfvaeError(f"{export_dir} has no TFLite decoder (export it with: python cli.py export RUN_DIR --tflite)")
        version = versions[-1]
    path = root / str(version)
    if not path.is_dir():
        raise TfvaeError(f"{export_dir} has no TFLite version {version} (versions: {versions})")
    return path


def load_decoder(path, num_threads: int = 1):
    """A LiteRT interpreter for a decoder ``.tflite``.

    Raises:
        TfvaeError: the file is missing or not a valid TFLite model.
    """
    from ai_edge_litert.interpreter import Interpreter

    path = Path(path)
    if not path.is_file():
        raise TfvaeError(f"{path} is missing")
    try:
        with native_output_silenced():  # LiteRT's "Created XNNPACK delegate" INFO line
            interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
            interpreter.allocate_tensors()
        if "serving_default" not in interpreter.get_signature_list():
            raise ValueError("no serving_default signature")
    except (ValueError, RuntimeError) as exc:
        raise TfvaeError(f"{path}: not a usable TFLite decoder ({' '.join(str(exc).split())[:160]})") from None
    return interpreter


def decoder_input(card: dict):
    """(name, shape without the batch, numpy dtype) of the decoder's input as the model card
    says: ``z`` float32 [D] (``latent_dim``), or a VQ-VAE's ``codes`` int32 [h, w]."""
    spec = card.get("decoder_input")
    if isinstance(spec, dict):
        return spec["name"], [int(v) for v in spec["shape"]], np.dtype(spec["dtype"])
    return "z", [int(card["latent_dim"])], np.dtype(np.float32)


def decode(interpreter, z: np.ndarray, name: str = "z", output: str = "images") -> np.ndarray:
    """Run ``serving_default`` on its input ``name`` (z float32 [B, D], or code grids int32
    [B, h, w]); returns ``output`` (``images``: float32 [B, H, W, C]).

    A fixed-batch model (``decoder_b1.tflite``) is called once per row.
    """
    runner = interpreter.get_signature_runner("serving_default")
    details = runner.get_input_details()[name]
    z = np.asarray(z).astype(details["dtype"])
    if details["shape_signature"][0] == -1:
        return runner(**{name: z})[output]
    return np.concatenate([runner(**{name: z[i:i + 1]})[output] for i in range(len(z))])


def sample_code_grids(logits_fn, n: int, grid, seed: int = 0, batch: int = 256) -> np.ndarray:
    """Draw n code grids from an autoregressive prior, one position at a time in raster order.

    ``logits_fn(codes int32 [m, h, w]) -> logits [m, h, w, K]``, where position i's logits
    depend only on the codes before it (a VQ-VAE's prior: TensorFlow, LiteRT or onnxruntime).
    Position i of each grid is drawn by the Gumbel-max trick from numpy's
    ``default_rng(seed)`` (uniform noise [m, K] per position, in order), so every runtime
    draws the same grids for the same seed and the same logits. h·w calls per batch.

    Returns:
        int32 [n, h, w].
    """
    h, w = (int(v) for v in grid)
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, n, batch):
        m = min(batch, n - start)
        codes = np.zeros((m, h * w), np.int32)
        for i in range(h * w):
            logits = np.asarray(logits_fn(codes.reshape(m, h, w)), np.float64).reshape(m, h * w, -1)[:, i]
            gumbel = -np.log(-np.log(rng.uniform(1e-12, 1.0, logits.shape)))
            codes[:, i] = np.argmax(logits + gumbel, axis=1)
        out.append(codes.reshape(m, h, w))
    return np.concatenate(out) if out else np.zeros((0, h, w), np.int32)


def generate(export_dir, n: int = 16, seed: int = 0, variant: str = "auto", version=None, runtime: str = "litert"):
    """Draw z ~ p(z) (the model card's prior) with ``numpy.random.default_rng(seed)`` and decode
    with LiteRT (``runtime="litert"``, the TFLite ``variant``) or onnxruntime (``"onnx"``, float32).

    Returns:
        (images float32 [n, H, W, C] in [0, 1], model card dict); the card's ``"used"`` says
        which runtime and file decoded them.

    Raises:
        TfvaeError: n < 1, unknown variant or runtime, or a missing / corrupt decoder file.
    """
    if n < 1:
        raise TfvaeError(f"-n must be a positive integer, got {n}")
    if runtime not in RUNTIMES:
        raise TfvaeError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime == "onnx":
        if variant not in ("auto", "float32"):
            raise TfvaeError(f"--runtime onnx decodes with the float32 decoder.onnx; --variant {variant} is LiteRT's")
        from .onnx_runtime import onnx_dir, onnx_session, run_decoder

        folder = onnx_dir(export_dir, version)
        card = verify_export(Path(export_dir) / "tflite" / folder.name, also=("onnx",))
        session = onnx_session(folder / "decoder.onnx", card)
        card["used"] = {"runtime": "onnxruntime", "file": str(folder / "decoder.onnx"), "variant": "float32"}
        if _autoregressive(card):
            prior = onnx_session(folder / card["prior"]["onnx_file"], input_name="codes", output_name="logits")
            codes = sample_code_grids(lambda c: run_decoder(prior, c, "logits", "codes"), n, card["prior"]["grid"],
                                      seed)
            return run_decoder(session, codes, name="codes"), card
        return run_decoder(session, draw_prior(card, n, seed)), card
    folder = tflite_dir(export_dir, version)
    variant = pick_variant(folder, variant)
    path = folder / VARIANTS[variant]
    if not path.is_file():
        raise TfvaeError(f"{path} is missing (export with --tflite --quantize {variant})"
                         if variant != "float32" else f"{path} is missing")
    card = verify_export(folder)
    interpreter = load_decoder(path, num_threads=LITERT_RUNTIME["num_threads"])
    check_decoder_shapes(interpreter, card, path)
    card["used"] = {"runtime": "litert", "file": str(path), "variant": variant,
                    "num_threads": LITERT_RUNTIME["num_threads"], "delegate": LITERT_RUNTIME["delegate"]}
    if _autoregressive(card):
        prior = load_decoder(folder / card["prior"]["file"], num_threads=LITERT_RUNTIME["num_threads"])
        codes = sample_code_grids(lambda c: decode(prior, c, "codes", "logits"), n, card["prior"]["grid"], seed)
        return decode(interpreter, codes, "codes"), card
    return decode(interpreter, draw_prior(card, n, seed)), card


def _autoregressive(card: dict) -> bool:
    """The export's prior is autoregressive over a code grid (a VQ-VAE): sampled position by
    position with its own model file (:func:`sample_code_grids`)."""
    return isinstance(card.get("prior"), dict) and card["prior"].get("kind") == "autoregressive"


def read_card(folder) -> dict:
    """The model card ``folder/model_card.json`` as a dict.

    Raises:
        TfvaeError: missing, not strict JSON (or nested too deep to parse), lacking ``files``,
            ``latent_dim`` or ``image_shape`` [H, W, C], or with a malformed ``decoder_input`` or
            ``prior`` (see :func:`_card_problem`).
    """
    card_path = Path(folder) / "model_card.json"
    try:
        card = json.loads(card_path.read_text(), parse_constant=_no_constant)
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        raise TfvaeError(f"{card_path} is missing or not valid JSON") from None
    ok = (isinstance(card, dict) and isinstance(card.get("files"), list) and _positive_int(card.get("latent_dim"))
          and isinstance(card.get("image_shape"), list) and len(card["image_shape"]) == 3
          and all(_positive_int(v) for v in card["image_shape"]))
    if not ok:
        raise TfvaeError(f"{card_path}: not a tfvae model card (files, latent_dim, image_shape)")
    problem = _card_problem(card)
    if problem:
        raise TfvaeError(f"{card_path}: {problem}; the card is damaged (export again with: python cli.py export "
                         f"RUN_DIR --tflite)")
    return card


def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 1 << 20


def _card_problem(card: dict):
    """What is wrong with the card's ``decoder_input`` or ``prior`` (None when nothing): the
    mixture's weights must be finite, non-negative and not all zero, its loc and scale finite
    [M, D] arrays (scale > 0); an autoregressive prior names its files and a [h, w] grid."""
    spec = card.get("decoder_input")
    if spec is not None:
        if not (isinstance(spec, dict) and spec.get("name") in ("z", "codes") and isinstance(spec.get("shape"), list)
                and all(_positive_int(v) for v in spec["shape"]) and spec.get("dtype") in ("float32", "int32")):
            return "decoder_input must be {name: z or codes, shape: positive integers, dtype: float32 or int32}"
    prior = card.get("prior")
    if prior is None:
        return None
    if not isinstance(prior, dict):
        return "prior must be an object"
    kind = prior.get("kind", "standard")
    if kind in ("standard", "hierarchical"):
        return None
    if kind == "autoregressive":
        grid = prior.get("grid")
        if not (isinstance(grid, list) and len(grid) == 2 and all(_positive_int(v) for v in grid)
                and isinstance(prior.get("file"), str) and isinstance(prior.get("onnx_file", ""), str)):
            return "the autoregressive prior needs file (a string) and grid [h, w] (positive integers)"
        return None
    try:
        weights = np.asarray(prior["weights"], np.float64)
        loc, scale = np.asarray(prior["loc"], np.float64), np.asarray(prior["scale"], np.float64)
    except (KeyError, TypeError, ValueError):
        return f"the {kind} prior needs weights [M], loc [M, D] and scale [M, D] (numbers)"
    m, d = len(weights) if weights.ndim == 1 else -1, card["latent_dim"]
    if weights.ndim != 1 or m < 1 or loc.shape != (m, d) or scale.shape != (m, d):
        return (f"the {kind} prior needs weights [M], loc [M, {d}] and scale [M, {d}]; got shapes "
                f"{list(weights.shape)}, {list(loc.shape)}, {list(scale.shape)}")
    if not (np.isfinite(weights).all() and (weights >= 0).all() and weights.sum() > 0):
        return f"the {kind} prior's weights must be finite, non-negative and not all zero"
    if not (np.isfinite(loc).all() and np.isfinite(scale).all() and (scale > 0).all()):
        return f"the {kind} prior's loc and scale must be finite, and scale positive"
    return None


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def sha256_file(path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_export(folder, also=()) -> dict:
    """Check every file of this TFLite version against the SHA-256 and size in its model card.

    Args:
        folder: EXPORT_DIR/tflite/<v>.
        also: other components of the version whose listed files are checked too (``("onnx",)``).

    Returns:
        The model card (dict).

    Raises:
        TfvaeError: a listed file is missing or its bytes differ from the card (names the
            file), or a ``.tflite`` (or, with ``also=("onnx",)``, an ``.onnx``) of the version is
            not listed in the card: the TFLite and the ONNX paths refuse the same unverified files.
    """
    folder = Path(folder)
    card = read_card(folder)
    export_dir = folder.parents[1]
    listed = set()
    prefixes = tuple(f"{component}/{folder.name}/" for component in ("tflite", *also))
    for entry in card["files"]:
        rel = entry.get("path", "") if isinstance(entry, dict) else ""
        if not rel.startswith(prefixes):
            continue
        path = export_dir / rel
        listed.add(path.name)
        if not path.is_file():
            raise TfvaeError(f"{path} is missing (the model card lists it)")
        if path.stat().st_size != entry.get("bytes") or sha256_file(path) != entry.get("sha256"):
            raise TfvaeError(f"{path}: its SHA-256 differs from the model card's; the export is damaged or was "
                             f"changed (export again with: python cli.py export RUN_DIR --tflite)")
    for component, suffix in (("tflite", "*.tflite"), *((c, f"*.{c}") for c in also)):
        for path in sorted((export_dir / component / folder.name).glob(suffix)):
            if path.name not in listed:
                raise TfvaeError(f"{path} is not listed in {folder / 'model_card.json'}; refusing an unverified "
                                 f"model (export again with: python cli.py export RUN_DIR --tflite)")
    return card


def check_decoder_shapes(interpreter, card: dict, path) -> None:
    """The decoder's input (``z`` [B, latent_dim], or ``codes`` [B, h, w]: :func:`decoder_input`)
    and its ``images`` output [B, *image_shape] must be as the model card says.

    Raises:
        TfvaeError: a shape differs (names the file and both shapes).
    """
    name, shape, _ = decoder_input(card)
    runner = interpreter.get_signature_runner("serving_default")
    inputs = runner.get_input_details()
    z = [int(v) for v in inputs[name]["shape_signature"]][1:] if name in inputs else None
    images = [int(v) for v in runner.get_output_details()["images"]["shape_signature"]][1:]
    if z != shape or images != list(card["image_shape"]):
        raise TfvaeError(f"{path}: decoder maps {name} {z} to images {images}, but the model card says {name} "
                         f"{shape} to images {card['image_shape']}")


def draw_prior(card: dict, n: int, seed: int = 0) -> np.ndarray:
    """n draws z ~ p(z) from the model card's prior (numpy ``default_rng(seed)``): float32 [n, D].

    N(0, I) for the standard prior and for a hierarchical VAE (whose decoder input is its
    groups' standard-normal noise); for a learned mixture, a component c ~ weights, then
    z = loc_c + scale_c · eps.
    """
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((n, int(card["latent_dim"])))
    prior = card.get("prior")
    if not isinstance(prior, dict) or prior.get("kind", "standard") in ("standard", "hierarchical"):
        return eps.astype(np.float32)
    weights = np.asarray(prior["weights"], np.float64)
    c = rng.choice(len(weights), size=n, p=weights / weights.sum())
    return (np.asarray(prior["loc"])[c] + np.asarray(prior["scale"])[c] * eps).astype(np.float32)


def save_generated(export_dir, n, out, seed=0, variant="auto", force=False, runtime="litert"):
    """Generate and save a PNG grid; refuses to replace ``out`` unless ``force``.

    Returns:
        (the PNG's path, the ``used`` record: runtime, file and variant).
    """
    from . import plots

    out = plots.check_png_out(out, force)
    images, card = generate(export_dir, n, seed, variant, runtime=runtime)
    used = card["used"]
    label = "onnxruntime float32" if used["runtime"] == "onnxruntime" else f"LiteRT {used['variant']}"
    kind = card.get("prior", {}).get("kind", "standard")
    prior = {"standard": "z ~ N(0, I)", "autoregressive": "codes ~ learned prior"}.get(kind, "z ~ learned prior")
    return plots.save_square_grid(images, out, title=f"{label} decoder, {prior}, seed {seed}"), used
