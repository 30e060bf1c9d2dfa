"""Packaging: ``pip install .`` makes ``tfvae`` importable from anywhere and installs the
``tfvae`` command, the same click group as ``python cli.py``.

The checkout's package files are copied to a temporary folder (pip builds in the source
tree, which must stay clean) and installed into a fresh virtual environment that reuses
the installed dependencies (``--system-site-packages``, ``--no-deps --no-index``: no network).
"""

import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_pip_install_gives_an_importable_package_and_the_tfvae_command(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "tfvae", src / "tfvae", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    env = tmp_path / "env"
    venv.create(env, system_site_packages=True, with_pip=False)
    python = env / "bin" / "python"
    install = subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                              "--no-build-isolation", "--disable-pip-version-check", str(src)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([python, "-c", "import tfvae, tfvae.models.registry as r; print(tfvae.__file__); "
                                          "print(','.join(r.names()))"],
                           capture_output=True, text=True, cwd=elsewhere, timeout=120)
    assert where.returncode == 0, where.stderr[-2000:]
    path, names = where.stdout.split()
    assert Path(path).resolve().is_relative_to(env.resolve()), path  # the installed copy, not the checkout
    assert "vae" in names.split(",")
    helped = subprocess.run([env / "bin" / "tfvae", "--help"], capture_output=True, text=True, cwd=elsewhere,
                            timeout=120)
    assert helped.returncode == 0, helped.stderr[-2000:]
    checkout = subprocess.run([sys.executable, str(ROOT / "cli.py"), "--help"], capture_output=True, text=True,
                              timeout=120)
    assert helped.stdout.split("\n", 1)[1] == checkout.stdout.split("\n", 1)[1]  # same commands, same text
    assert "train" in helped.stdout and "export" in helped.stdout
    presets = subprocess.run([env / "bin" / "tfvae", "train", "--preset", "no-such-recipe"], capture_output=True,
                             text=True, cwd=elsewhere, timeout=120)
    assert presets.returncode == 2 and "mnist-best" in presets.stderr  # the presets were installed with it
