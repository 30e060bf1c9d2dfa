"""``python -m tfvae``: the tfvae command line (:mod:`tfvae.cli`)."""

from tfvae.cli import cli

cli(prog_name="tfvae")
