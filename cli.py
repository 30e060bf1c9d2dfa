#!/usr/bin/env python
"""tfvae command line: ``python cli.py COMMAND ...`` from a checkout.

The commands live in :mod:`tfvae.cli`; ``pip install .`` installs the same group as the
``tfvae`` command.
"""

from tfvae.cli import cli

if __name__ == "__main__":
    cli()
