"""Commands find what they need: without RUN_DIR the latest finished run under runs/, without
EXPORT_DIR the newest export under exported/; with neither, a one-line error naming the
command that makes one."""

import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT
from test_cli import assert_one_line_error
from tfvae.errors import TfvaeError
from tfvae.latest import latest_export, latest_run


def cli_in(cwd, *args, timeout=300):
    """``python cli.py ARGS`` run from ``cwd`` (where runs/ and exported/ are looked for)."""
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env={**os.environ})


def fake_run(root, name, mtime, finished=True):
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    if finished:
        (run / "summary.json").write_text("{}")
        os.utime(run / "summary.json", (mtime, mtime))
    return run


def test_latest_run_is_the_most_recently_finished_one(tmp_path):
    fake_run(tmp_path, "a", 1000)
    newest = fake_run(tmp_path, "b", 3000)
    fake_run(tmp_path, "c", 2000)
    fake_run(tmp_path, "d-unfinished", 0, finished=False)  # started last, not finished: skipped
    assert latest_run(tmp_path) == newest
    (tmp_path / "stray-file").write_text("x")
    assert latest_run(tmp_path) == newest


def test_latest_export_is_the_newest_card_with_the_needed_file(tmp_path):
    for name, mtime, files in (("old", 1000, ["decoder.tflite", "decoder_b1.tflite"]),
                               ("new", 2000, ["decoder_dynamic.tflite"])):
        folder = tmp_path / name / "tflite" / "1"
        folder.mkdir(parents=True)
        for f in files:
            (folder / f).write_bytes(b"x")
        (folder / "model_card.json").write_text("{}")
        os.utime(folder / "model_card.json", (mtime, mtime))
    assert latest_export(tmp_path) == tmp_path / "new"
    assert latest_export(tmp_path, need="tflite/*/decoder_b1.tflite") == tmp_path / "old"  # what the demo needs
    with pytest.raises(TfvaeError, match="--onnx"):
        latest_export(tmp_path, need="onnx/*/decoder.onnx")


def test_nothing_to_use_is_a_one_line_error_naming_the_command(tmp_path):
    (tmp_path / "runs" / "unfinished").mkdir(parents=True)
    for command in ("evaluate", "sample", "export", "traverse"):
        assert_one_line_error(cli_in(tmp_path, command), "no finished run under runs/", "python cli.py train")
    assert_one_line_error(cli_in(tmp_path, "generate"), "no export under exported/", "python cli.py export")
    assert_one_line_error(cli_in(tmp_path, "demo"), "no export under exported/", "decoder_b1.tflite")
    assert_one_line_error(cli_in(tmp_path, "generate", "--runtime", "onnx"), "--onnx")


@pytest.mark.slow
def test_export_and_generate_without_arguments(run_dir, tmp_path):
    """`python cli.py export --tflite`, exactly as the design card writes it, exports the
    latest finished run; `generate` then uses that export."""
    shutil.copytree(run_dir, tmp_path / "runs" / "mine")
    result = cli_in(tmp_path, "export", "--tflite")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[0] == "using runs/mine, the latest finished run", result.stdout
    assert (tmp_path / "exported" / "mine" / "tflite" / "1" / "decoder.tflite").is_file()
    result = cli_in(tmp_path, "generate", "-n", 4, "--out", "g.png")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[0] == "using exported/mine, the newest export", result.stdout
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
