"""A bad-input battery through the CLI, every command: each case must end with one line
on stderr, a non-zero exit, no traceback, and no file that existed before changed.

Most cases run in this process through click's ``CliRunner`` (the same ``main`` and the same
one-line error handling as ``python cli.py``, without a new interpreter and a TensorFlow
import for each of them); ``generate`` and ``demo`` (no TensorFlow; a server is bounded by
the subprocess's timeout), and a case each of ``train``, ``evaluate``, ``sample`` and
``export`` past TensorFlow's start (marked :class:`Process`), run as their own ``python
cli.py`` process, where C++ start-up chatter on stderr would show.
"""

import hashlib
import json
import sys
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from test_cli import assert_one_line_error
from test_data import make_idx_folder


class Process(list):
    """The arguments of a case that runs as its own ``python cli.py`` process."""


def run_in_process(*args):
    """``python cli.py ARGS`` in this process (click's CliRunner): returns an object with
    ``returncode``, ``stdout`` and ``stderr``; an exception that escaped the CLI's one-line
    error handling fails the test with its traceback."""
    from types import SimpleNamespace

    from click.testing import CliRunner

    from tfvae.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{args}: an exception escaped the CLI") from result.exception
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)


def run_case(args):
    if isinstance(args, Process) or args[0] in ("generate", "demo"):
        return run_cli(*args)
    return run_in_process(*args)


pytestmark = pytest.mark.slow


def digest(*folders):
    """{path: SHA-256} of every file under the folders (lock files, which hold the last
    holder's pid, left out)."""
    out = {}
    for folder in folders:
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file() and p.name != ".lock":
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def snapshot(*folders):
    """{path: (inode, size, mtime in ns)} of every file under the folders: a write, a
    truncation or a replacement of any file changes it, at a stat() per file instead of a
    hash of a few hundred MB per case."""
    out = {}
    for folder in folders:
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file() and p.name != ".lock":
                st = p.stat()
                out[str(p)] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


def read_only_folder(tmp_path):
    """A folder this process cannot write into (root ignores permission bits, so use /sys)."""
    if os.geteuid() == 0:
        return Path("/sys")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def test_bad_input_battery(run_dir, export_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    exported = tmp_path / "exported"
    shutil.copytree(export_dir, exported)
    idx = make_idx_folder(tmp_path / "idx")
    empty = tmp_path / "empty"
    empty.mkdir()
    existing_png = tmp_path / "existing.png"
    existing_png.write_bytes(b"\x89PNG not really")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    ro = read_only_folder(tmp_path)

    def broken_run(name, edit):
        folder = tmp_path / name
        shutil.copytree(run_dir, folder)
        edit(folder)
        return folder

    config = json.loads((run_dir / "config.json").read_text())
    unknown_key = broken_run("unknown-key", lambda f: (f / "config.json").write_text(
        json.dumps({**config, "model": {**config["model"], "depth": 3}})))
    missing_field = broken_run("missing-field", lambda f: (f / "config.json").write_text(
        json.dumps({**config, "model": {k: v for k, v in config["model"].items() if k != "image_shape"}})))
    not_json = broken_run("not-json", lambda f: (f / "config.json").write_text("{ half"))

    def truncate_weights(folder):
        for p in (folder / "checkpoints").glob("*.h5"):
            p.write_bytes(p.read_bytes()[:1000])

    truncated_h5 = broken_run("truncated-h5", truncate_weights)
    truncated_tflite = tmp_path / "truncated-tflite"
    shutil.copytree(export_dir, truncated_tflite)
    for p in (truncated_tflite / "tflite").rglob("decoder.tflite"):
        p.write_bytes(p.read_bytes()[:5000])
    def set_config(name, section, key, value):
        return broken_run(name, lambda f: (f / "config.json").write_text(
            json.dumps({**config, section: {**config[section], key: value}})))

    wrong_types = [
        (set_config("latent-str", "model", "latent_dim", "8"), "model.latent_dim"),
        (set_config("shape-2d", "model", "image_shape", [28, 28]), "model.image_shape"),
        (set_config("hidden-str", "model", "hidden_units", "512"), "model.hidden_units"),
        (set_config("seed-negative", "train", "seed", -3), "train.seed"),
        (set_config("beta-str", "train", "beta", "one"), "train.beta"),
        (set_config("jit-int", "train", "jit", 1), "train.jit"),
        (set_config("sigma-bool", "model", "sigma", True), "model.sigma"),
        (broken_run("lr-nan", lambda f: (f / "config.json").write_text(
            (f / "config.json").read_text().replace('"learning_rate": 0.001', '"learning_rate": NaN'))), "NaN"),
        (broken_run("meta-list", lambda f: (f / "config.json").write_text(json.dumps({**config, "meta": [1]}))),
         "meta"),
        (broken_run("classes-int", lambda f: (f / "config.json").write_text(
            json.dumps({**config, "meta": {**config["meta"], "class_names": 3}}))), "class_names"),
    ]

    def nan_weights(folder):
        import h5py

        for p in (folder / "checkpoints").glob("*.h5"):
            with h5py.File(p, "r+") as f:
                names = []
                f.visititems(lambda n, o: names.append(n) if hasattr(o, "dtype") and o.dtype.kind == "f" else None)
                f[names[0]][...] = float("nan")

    nan_run = broken_run("nan-weights", nan_weights)
    bad_eval = broken_run("bad-eval", lambda f: (f / "eval.json").write_text('{"metrics": [1, 2'))
    unfinished = broken_run("bad-metrics", lambda f: ((f / "summary.json").unlink(),
                                                      (f / "metrics.csv").write_text("epoch,loss\n0,1.5\n7,oops\n")))
    damaged_backup = broken_run("bad-backup", lambda f: ((f / "summary.json").unlink(), (f / "backup").mkdir(),
                                                         (f / "backup" / "training_metadata.json").write_text("{"),
                                                         (f / "backup" / "latest.weights.h5").write_bytes(b"junk")))
    tampered = tmp_path / "tampered"
    shutil.copytree(export_dir, tampered)
    for p in (tampered / "tflite").rglob("decoder_b1.tflite"):
        p.write_bytes(p.read_bytes()[:-1] + bytes([p.read_bytes()[-1] ^ 1]))
    for p in (tampered / "tflite").rglob("decoder.tflite"):
        p.write_bytes(p.read_bytes()[:-1] + bytes([p.read_bytes()[-1] ^ 1]))
    wrong_card = tmp_path / "wrong-card"
    shutil.copytree(export_dir, wrong_card)
    for p in (wrong_card / "tflite").rglob("model_card.json"):
        card = json.loads(p.read_text())
        p.write_text(json.dumps({**card, "latent_dim": card["latent_dim"] + 1}))
    locked = broken_run("locked", lambda f: None)
    from tfvae.locks import folder_lock

    # ---- round 3 (issue 27): one or more cases per category -----------------------------------
    from test_image_folder import bomb_png, grey_folder

    version = next(p.name for p in (export_dir / "tflite").iterdir())
    unlisted_onnx = tmp_path / "unlisted-onnx"  # 1. an ONNX decoder the model card does not list
    shutil.copytree(export_dir, unlisted_onnx)
    (unlisted_onnx / "onnx" / version).mkdir(parents=True, exist_ok=True)
    if not (unlisted_onnx / "onnx" / version / "decoder.onnx").is_file():
        shutil.copy(next((unlisted_onnx / "tflite" / version).glob("decoder.tflite")),
                    unlisted_onnx / "onnx" / version / "decoder.onnx")
    unlisted_card = unlisted_onnx / "tflite" / version / "model_card.json"  # as exported without --onnx
    card = json.loads(unlisted_card.read_text())
    unlisted_card.write_text(json.dumps({**card, "files": [e for e in card["files"]
                                                           if not e["path"].startswith("onnx/")]}))
    bomb_dir = tmp_path / "bombs"  # 1. a decompression bomb, alone in its folder
    bomb_png(bomb_dir / "bomb.png")
    superscript = tmp_path / "superscript"  # 2. a version folder named "²" (str.isdigit says yes)
    (superscript / "tflite").mkdir(parents=True)
    shutil.copytree(export_dir / "tflite" / version, superscript / "tflite" / "²")
    from test_data import write_idx

    idx_mismatch = make_idx_folder(tmp_path / "idx-mismatch")  # 2. test images of another size
    write_idx(idx_mismatch / "t10k-images-idx3-ubyte.gz", np.zeros((10, 7, 5), np.uint8), True)
    idx_overflow = make_idx_folder(tmp_path / "idx-overflow")  # 2. a header whose size overflows int64
    import gzip
    import struct

    with gzip.open(idx_overflow / "train-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(bytes([0, 0, 8, 3]) + struct.pack(">III", 2**32 - 1, 2**32 - 1, 2**32 - 1) + b"\0" * 64)
    bad_prior = tmp_path / "bad-prior"  # 2. a model card whose mixture prior has a negative weight
    shutil.copytree(export_dir, bad_prior)
    card_path = bad_prior / "tflite" / version / "model_card.json"
    card = json.loads(card_path.read_text())
    d = card["latent_dim"]
    card_path.write_text(json.dumps({**card, "prior": {"kind": "mog", "weights": [-1.0, 2.0], "loc": [[0.0] * d] * 2,
                                                       "scale": [[1.0] * d] * 2}}))
    deep_card = tmp_path / "deep-card"  # 2. absurd nesting
    shutil.copytree(export_dir, deep_card)
    (deep_card / "tflite" / version / "model_card.json").write_text("[" * 100000 + "]" * 100000)
    edited = broken_run("edited-after-training", lambda f: (f / "config.json").write_text(  # 2. say which field
        json.dumps({**config, "model": {**config["model"], "latent_dim": config["model"]["latent_dim"] + 1}})))
    faces = tmp_path / "faces"  # 4. an image-folder run whose recorded test file is gone
    grey_folder(faces, per_class=4, size=tuple(config["model"]["image_shape"][:2]))
    folder_run = broken_run("folder-run", lambda f: (
        (f / "config.json").write_text(json.dumps({**config, "data": {**config["data"], "image_dir": str(faces),
                                                                      "dataset": "faces", "channels": 1}})),
        (f / "test_files.json").write_text(json.dumps({"test_files": ["a/gone.png"]}))))
    idx_pca = make_idx_folder(tmp_path / "idx-pca")  # 6. a PCA run: evaluate honours --image-dir
    result = run_in_process("train", "--idx-dir", idx_pca, "--validation-size", 5, "--model", "pca", "--latent-dim", 2,
                            "--run-dir", tmp_path / "pca-run")
    assert result.returncode == 0, result.stderr
    pca_run = tmp_path / "pca-run"

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]

    cases = [
        # train: types and ranges
        (["train", "--latent-dim", "abc"], "--latent-dim"),
        (["train", "--latent-dim", "0"], "--latent-dim"),
        (["train", "--beta", "-1"], "--beta"),
        (["train", "--epochs", "0"], "--epochs"),
        (["train", "--batch-size", "-5"], "--batch-size"),
        (["train", "--learning-rate", "0"], "--learning-rate"),
        (["train", "--mc-samples", "0"], "--mc-samples"),
        (["train", "--kl-warmup-epochs", "-1"], "--kl-warmup-epochs"),
        (["train", "--validation-size", "-1"], "--validation-size"),
        (["train", "--sigma", "wide", "--likelihood", "gaussian"], "--sigma"),
        (["train", "--hidden-units", "64,x"], "--hidden-units"),
        (["train", "--devices", "/cpu:0"], "--devices"),
        # train: the model family and recipes
        (["train", "--model", "gan"], "--model"),
        (["train", "--objective", "iwae", "--train-iw-samples", "0"], "--train-iw-samples"),
        (["train", "--objective", "iwae", "--train-iw-samples", "-3"], "--train-iw-samples"),
        (["train", "--train-iw-samples", "5"], "--objective iwae"),
        (["train", "--model", "ae", "--objective", "iwae", "--train-iw-samples", "5"], "--objective iwae"),
        (["train", "--prior", "vamp", "--model", "pca"], "--prior"),
        (["train", "--free-bits", "-1"], "--free-bits"),
        (["train", "--model", "vae", "--free-bits", "0.5", "--prior", "mog"], "--free-bits"),
        (["train", "--ema-decay", "1"], "--ema-decay"),
        (["train", "--preset", "mnist-worst"], "--preset"),
        (["train", "--resume", run, "--preset", "mnist-best"], "--preset"),
        # train: data and folders
        (["train", "--dataset", "mnsit"], "mnist"),
        (["train", "--idx-dir", tmp_path / "missing"], "not a folder"),
        (["train", "--idx-dir", empty], "train-images"),
        (["train", "--idx-dir", idx, "--run-dir", run], "already exists"),
        (["train", "--idx-dir", idx, "--validation-size", 5, "--run-dir", ro / "run"], "cannot create"),
        (["train", "--idx-dir", idx, "--validation-size", 5, "--run-dir", a_file / "run"], "cannot create"),
        (["train", "--resume", empty], "config.json"),
        (["train", "--resume", run], "already finished"),
        # evaluate
        (["evaluate", empty], "not a tfvae run directory"),
        (["evaluate", unknown_key], "unknown key"),
        (["evaluate", missing_field], "image_shape"),
        (["evaluate", not_json], "not readable JSON"),
        (Process(["evaluate", truncated_h5]), "cannot load weights"),
        (["evaluate", run, "--iw-samples", "0"], "--iw-samples"),
        (["evaluate", run, "--max-examples", "0"], "--max-examples"),
        # sample
        (["sample", run, "-n", "0"], "-n"),
        (["sample", run, "--out", existing_png], "already exists"),
        (["sample", run, "--out", tmp_path / "missing" / "s.png"], "does not exist"),
        (Process(["sample", run, "--out", ro / "s.png"]), "cannot write"),
        (["sample", a_file], "not a folder"),
        (["sample", run, "--label", "3"], "--label"),
        (["sample", run, "--source", "fitted"], "--source fitted"),
        # traverse and compare
        (["traverse", run, "--dims", "0", "--out", tmp_path], "--dims"),
        (["traverse", empty], "not a tfvae run directory"),
        (["compare"], "at least one RUN_DIR"),
        (["compare", run, empty], "not a tfvae run directory"),
        (["compare", a_file], "not a folder"),
        # export
        (["export", tmp_path / "missing"], "not a folder"),
        (["export", truncated_h5, "--out", tmp_path / "x"], "cannot load weights"),
        (["export", run, "--quantize", "int8", "--out", tmp_path / "x"], "--tflite"),
        (["export", run, "--tflite", "--int8-scales", "per-tensor", "--out", tmp_path / "x"], "--quantize int8"),
        (["export", run, "--out", a_file], "--out"),
        (["export", run, "--out", ro], "cannot create"),
        # generate
        (["generate", truncated_tflite, "--out", tmp_path / "g.png"], "decoder.tflite"),
        (["generate", exported, "--variant", "int4", "--out", tmp_path / "g.png"], "--variant"),
        (["generate", exported, "-n", "-1", "--out", tmp_path / "g.png"], "-n"),
        (["generate", empty, "--out", tmp_path / "g.png"], "no TFLite decoder"),
        (["generate", exported, "--out", existing_png], "already exists"),
        # demo
        (["demo", empty], "no TFLite decoder"),
        (["demo", exported, "--port", port], f"--port {port}"),
        (["demo", exported, "--port", "70000"], "--port"),
        # numbers in range, checked at parse time (before TensorFlow starts)
        (["train", "--seed", "-1"], "--seed"),
        (["train", "--beta", "nan"], "--beta"),
        (["train", "--beta", "inf"], "--beta"),
        (["train", "--learning-rate", "inf"], "--learning-rate"),
        (["train", "--free-bits", "nan"], "--free-bits"),
        (["train", "--sigma", "nan", "--likelihood", "gaussian"], "--sigma"),
        (["train", "--sigma", "0", "--likelihood", "gaussian"], "--sigma"),
        (["train", "--latent-dim", "100000"], "--latent-dim"),
        (["train", "--prior", "vamp", "--model", "cvae"], "--prior vamp"),
        (["evaluate", run, "--seed", "-1"], "--seed"),
        (["evaluate", run, "-k", "100000000"], "--iw-samples"),
        (["sample", run, "-n", "100000000"], "-n"),
        (["generate", exported, "-n", "1000000000", "--out", tmp_path / "g.png"], "-n"),
        (["interpolate", run, "--from", "0", "--to", "1", "--steps", "100000"], "--steps"),
        (["interpolate", run, "--from", "-1", "--to", "1"], "--from"),
        (["traverse", run, "--limit", "inf"], "--limit"),
        (["latent", run, "--grid", "100000"], "--grid"),
        (["inpaint", run, "-n", "0"], "-n"),
        (["demo", exported, "--port", "-1"], "--port"),
        (["compare", run, "--samples", "1000000000"], "--samples"),
        # corrupt state: config.json fields of the wrong type or shape
        *[(["evaluate", folder], fragment) for folder, fragment in wrong_types],
        *[(["export", folder, "--out", tmp_path / "x"], fragment) for folder, fragment in wrong_types[:3]],
        (["train", "--resume", wrong_types[0][0]], "model.latent_dim"),
        # weights with NaN, a damaged eval.json, a damaged resume state
        (["evaluate", nan_run], "NaN or Inf"),
        (Process(["export", nan_run, "--out", tmp_path / "x"]), "NaN or Inf"),
        (["export", bad_eval, "--out", tmp_path / "x"], "eval.json is damaged"),
        (["train", "--resume", unfinished], "metrics.csv, line 3"),
        (Process(["train", "--resume", damaged_backup]), "backup"),
        # exports are verified before use
        (["generate", tampered, "--out", tmp_path / "g.png"], "SHA-256"),
        (["demo", tampered, "--port", "0"], "SHA-256"),
        (["generate", wrong_card, "--out", tmp_path / "g.png"], "model card says"),
        (["demo", wrong_card, "--port", "0"], "model card says"),
        # round 3. security: the ONNX path refuses what the TFLite path refuses; decompression bombs
        (["generate", unlisted_onnx, "--runtime", "onnx", "--out", tmp_path / "g.png"], "is not listed"),
        (["train", "--image-dir", bomb_dir, "--run-dir", tmp_path / "x"], "declares 400000000 pixels"),
        # round 3. no traceback: odd version names, IDX files, masks, model cards, edited configs, memory
        (["generate", superscript, "--out", tmp_path / "g.png"], "no TFLite decoder"),
        (["train", "--idx-dir", idx_mismatch, "--validation-size", 5, "--run-dir", tmp_path / "x"],
         "both splits need one size"),
        (["train", "--idx-dir", idx_overflow, "--validation-size", 5, "--run-dir", tmp_path / "x"], "its header"),
        (["inpaint", run, "--mask", "random:."], "--mask"),
        (["generate", bad_prior, "--out", tmp_path / "g.png"], "prior's weights"),
        (["generate", deep_card, "--out", tmp_path / "g.png"], "not valid JSON"),
        (["evaluate", edited, "-k", 2], "model.latent_dim"),
        (["export", edited, "--out", tmp_path / "x"], "checkpoints were trained with"),
        (["train", "--idx-dir", idx, "--validation-size", 5, "--mc-samples", 100000, "--run-dir", tmp_path / "x"],
         "--mc-samples"),
        (["evaluate", run, "--chunk", 4194304], "--chunk 4194304"),
        # round 3. silent wrong results: a run's recorded test split is used, or refused
        (["evaluate", folder_run, "-k", 2], "no longer holds 1 of the run's 1 test files"),
        # round 3. messages that name the right thing
        (["inpaint", run, "--mask", "random:0.0001"], "leaves no pixel"),
        (["anomaly", run, "--ood", ""], "--ood"),
        # round 3. the audit: evaluate of a PCA run honours --image-dir
        (["evaluate", pca_run, "--image-dir", tmp_path / "missing-folder"], "missing-folder"),
        # concurrent use: a run held by another process
        (["evaluate", locked, "--iw-samples", 2], f"pid {os.getpid()}"),
        (["train", "--resume", locked], f"pid {os.getpid()}"),
        (["classify", locked], f"pid {os.getpid()}"),
    ]
    with folder_lock(locked, "a test holding the lock"):
        before, contents = snapshot(tmp_path), digest(tmp_path)
        for args, fragment in cases:
            result = run_case(args)
            assert_one_line_error(result, fragment)
            assert snapshot(tmp_path) == before, f"{args} changed a file"
    assert digest(tmp_path) == contents, "a file's contents changed"
    busy.close()
    print(f"bad-input battery: {len(cases)} cases, each a one-line error with a non-zero exit and no file changed")
    assert len(cases) >= 25


def test_multiworker_options_its_loop_does_not_run_are_refused_before_any_worker_starts(tmp_path):
    tf_config = json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}})
    idx = make_idx_folder(tmp_path / "idx")
    for extra in (["--jit"], ["--steps-per-execution", "4"]):
        result = run_cli("train", "--model", "vae", "--idx-dir", idx, "--validation-size", 5, "--strategy", "multiworker", *extra,
                         "--run-dir", tmp_path / "run", env={"TF_CONFIG": tf_config}, timeout=120)
        assert_one_line_error(result, "without --jit or --steps-per-execution")
        assert not (tmp_path / "run").exists()


def test_round_three_cases_that_need_their_own_environment(run_dir, export_dir, tmp_path, monkeypatch):
    """Bad input that lives outside the arguments: TF_CONFIG (several workers), a recipe file,
    the current folder (a run interrupted before it finished), and a bench script's --result.
    Each ends in one line, a non-zero exit, no traceback, and nothing written."""
    import subprocess

    import tfvae.config
    from conftest import ROOT

    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "broken.json").write_text('{"train": {"epochs": 3,')
    work = tmp_path / "work"
    shutil.copytree(run_dir, work / "runs" / "interrupted")
    (work / "runs" / "interrupted" / "summary.json").unlink()
    before = snapshot(tmp_path)
    # 3. several workers: a TF_CONFIG whose task is not an object
    config = json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": [0]})
    result = run_cli("train", "--model", "vae", "--strategy", "multiworker", "--run-dir", tmp_path / "r", env={"TF_CONFIG": config})
    assert_one_line_error(result, "TF_CONFIG: task must be an object")
    # 2. a --preset file that is not valid JSON
    with monkeypatch.context() as m:
        m.setattr(tfvae.config, "PRESET_DIR", presets)
        assert_one_line_error(run_in_process("train", "--preset", "broken", "--run-dir", tmp_path / "r"),
                              "--preset broken", "not readable JSON")
    # 9. after Ctrl-C: export names the interrupted run and the two ways on
    with monkeypatch.context() as m:
        m.chdir(work)
        assert_one_line_error(run_in_process("export", "--tflite"), "runs/interrupted was interrupted",
                              "--resume runs/interrupted", "as RUN_DIR")
    # 7. a bench script given --result as a path outside bench/results/
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "export_bench.py"), str(export_dir), "--result",
                             str(tmp_path / "x.json")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert_one_line_error(result, "--result", "bench/results/NAME.json")
    assert snapshot(tmp_path) == before, "a case wrote a file"


def test_a_run_recorded_before_a_model_field_existed_is_checked_against_its_default(tmp_path):
    """A run trained by an older tfvae has a trained-model record without the fields added
    since (``group_maps``, ``posterior_flows``): it still loads, and an edit of a field the
    record has is still refused."""
    import dataclasses

    from tfvae.config import RunConfig
    from tfvae.errors import TfvaeError
    from tfvae.rundir import TRAINED_MODEL, check_trained_config

    cfg = RunConfig()
    cfg.model.image_shape = [28, 28, 1]
    old = dataclasses.asdict(cfg.model)
    del old["group_maps"], old["posterior_flows"]
    (tmp_path / TRAINED_MODEL).parent.mkdir()
    (tmp_path / TRAINED_MODEL).write_text(json.dumps(old))
    check_trained_config(tmp_path, cfg)
    cfg.model.posterior_flows = 2
    with pytest.raises(TfvaeError, match="model.posterior_flows is 2, but the checkpoints were trained with 0"):
        check_trained_config(tmp_path, cfg)
    cfg.model.posterior_flows = 0
    cfg.model.res_blocks += 1
    with pytest.raises(TfvaeError, match="model.res_blocks"):
        check_trained_config(tmp_path, cfg)
