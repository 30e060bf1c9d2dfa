"""What this machine's processor can do, and which training precisions it runs natively.

Reduced-precision arithmetic only pays where the hardware has it. On an x86 CPU,
bfloat16 matrix products run natively with the AVX512-BF16 instructions or AMX tiles
(``avx512_bf16``, ``amx_bf16`` in ``/proc/cpuinfo``); without them oneDNN emulates
bfloat16 in float32 and training becomes several times slower (``--precision
mixed_bfloat16`` was reported at 0.11× float32 on the keras-io architecture on an AVX2
machine of the kind tfvae is developed on). float16 arithmetic
on a CPU is emulated the same way. :func:`check_precision` refuses such a choice with one
line before any data is loaded.

This module imports TensorFlow only to list GPUs (inside :func:`gpu_compute_capabilities`).
"""

from __future__ import annotations

from pathlib import Path

from .errors import TfvaeError

SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str | None = None) -> list:
    """The speed-relevant flags of this CPU, in :data:`SPEED_FLAGS` order.

    Args:
        cpuinfo: text of ``/proc/cpuinfo`` (read when None; tests pass their own).

    Returns:
        list of str, a subset of ``avx2, avx512f, avx512_bf16, amx_bf16, amx_tile``;
        empty where ``/proc/cpuinfo`` cannot be read (not Linux).
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return [f for f in SPEED_FLAGS if f in flags]


def gpu_compute_capabilities() -> list:
    """(major, minor) CUDA compute capability of each GPU TensorFlow sees; [] on a CPU-only
    machine. A GPU whose capability TensorFlow does not report counts as (0, 0)."""
    import tensorflow as tf

    out = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu) or {}
        out.append(tuple(details.get("compute_capability") or (0, 0)))
    return out


def native_precisions(flags=None, gpus=None) -> dict:
    """Which mixed precisions run natively here, and why.

    Args:
        flags: CPU flags as from :func:`cpu_flags` (read when None).
        gpus: compute capabilities as from :func:`gpu_compute_capabilities` (listed when None).

    Returns:
        ``{"float32": reason, "mixed_bfloat16": reason or None, "mixed_float16": reason or
        None}``: a reason string where the precision is native, None where it would be
        emulated. bfloat16: a GPU of compute capability ≥ 8.0 (Ampere) or a CPU with
        AVX512-BF16 or AMX-BF16; float16: any GPU of capability ≥ 7.0 (tensor cores).
    """
    flags = cpu_flags() if flags is None else list(flags)
    gpus = gpu_compute_capabilities() if gpus is None else list(gpus)
    out = {"float32": "always", "mixed_bfloat16": None, "mixed_float16": None}
    if any(tuple(c) >= (8, 0) for c in gpus):
        out["mixed_bfloat16"] = "a GPU with compute capability >= 8.0"
    elif any(f in flags for f in BFLOAT16_FLAGS):
        out["mixed_bfloat16"] = "the CPU has " + " and ".join(f for f in BFLOAT16_FLAGS if f in flags)
    if any(tuple(c) >= (7, 0) for c in gpus):
        out["mixed_float16"] = "a GPU with compute capability >= 7.0"
    return out


def check_precision(precision: str, flags=None, gpus=None) -> None:
    """Refuse a training precision this machine would only emulate.

    Args:
        precision: ``float32``, ``mixed_bfloat16`` or ``mixed_float16`` (``--precision``).
        flags, gpus: as for :func:`native_precisions` (read from this machine when None).

    Raises:
        TfvaeError: one line naming ``--precision``, what the machine lacks, and
            ``--precision float32``.
    """
    if precision == "float32" or native_precisions(flags, gpus).get(precision):
        return
    if precision == "mixed_bfloat16":
        lacks = "no GPU of compute capability >= 8.0 and a CPU without AVX512-BF16 or AMX"
    else:
        lacks = "no GPU of compute capability >= 7.0 (a CPU has no float16 arithmetic)"
    raise TfvaeError(f"--precision {precision}: this machine has {lacks}, so it would be emulated and run "
                     f"several times slower than float32; use --precision float32")
