"""The README's default-run figures, measured and written with their evidence.

    TFDS_DATA_DIR=../shared/tensorflow_datasets python bench/default_run.py [--run-dir runs/default]

Trains the default model (``python cli.py train --dataset mnist``, or ``--preset NAME``)
unless RUN_DIR already holds a finished run (its own ``config.json`` records the command that trained it), then
runs, through the CLI, the commands whose figures the README quotes: ``evaluate``
(K = 1,000, all 10,000 test images), and for an unconditional VAE run (one-layer or
hierarchical) ``classify``,
``anomaly`` (Fashion-MNIST, the validation split, blank / noise / inverted images) and
``inpaint`` (random half and bottom half). It copies the run's ``config.json``, ``summary.json``, ``metrics.csv``, ``eval.json``
and the commands' JSON files into ``bench/results/default/`` and writes
``bench/results/default_run.json`` (provenance, and the figures the README shows).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import ROOT, cli  # noqa: E402
from _evidence import RESULTS, write_result  # noqa: E402

COPIED = ["config.json", "summary.json", "metrics.csv", "eval.json", "figures/classify.json",
          "figures/anomaly_ood-fashion_mnist.json", "figures/anomaly_ood-mnist-validation.json",
          "figures/anomaly_corrupt-blank.json", "figures/anomaly_corrupt-noise.json",
          "figures/anomaly_corrupt-invert.json", "figures/inpaint_random0.5.json", "figures/inpaint_bottom.json",
          "figures/samples.png", "figures/reconstructions.png", "figures/loss.png", "prior_metrics.csv",
          "figures/samples_uniform.png"]


def parameter_counts(run_dir: Path) -> dict:
    sys.path.insert(0, str(ROOT))
    from tfvae.rundir import load_model

    model, _ = load_model(run_dir)
    enc = sum(int(v.numpy().size) for v in model.encoder.weights)
    dec = sum(int(v.numpy().size) for v in model.decoder.weights)
    return {"encoder": enc, "decoder": dec, "total": enc + dec}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=Path("runs/default"))
    parser.add_argument("--iw-samples", type=int, default=1000)
    parser.add_argument("--preset", default=None, help="train with this preset (e.g. mnist-best) instead of the defaults")
    parser.add_argument("--out", default="default", help="folder under bench/results and stem of the JSON file")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the run's eval.json when its protocol matches, and the figure JSON files it has")
    parser.add_argument("--note", default=None, help="a remark on the conditions of the run (recorded and shown)")
    args = parser.parse_args(argv)
    run = args.run_dir if args.run_dir.is_absolute() else ROOT / args.run_dir
    if not run.exists():
        cli("train", "--dataset", "mnist", "--run-dir", run, *(["--preset", args.preset] if args.preset else []))
    if not (run / "summary.json").is_file():
        sys.exit(f"error: {run} is not a finished run (no summary.json); finish it with: python cli.py train --resume {run}")
    sys.path.insert(0, str(ROOT))
    from tfvae.evaluate import matching_report

    def step(output, *args_):
        if args.reuse and (run / output).is_file():
            print(f"reusing {run / output}", flush=True)
        else:
            cli(*args_)

    if not (args.reuse and matching_report(run, args.iw_samples, 10000, 0)):
        cli("evaluate", run, "--iw-samples", args.iw_samples)
    kind = json.loads((run / "config.json").read_text())["model"]["model"]
    from tfvae.models import registry

    if registry.family(kind).discrete_codes:  # samples from a uniform prior, beside the learned prior's
        step("figures/samples_uniform.png", "sample", run, "-n", 64, "--source", "uniform", "--out",
             run / "figures" / "samples_uniform.png")
    family = registry.family(kind)
    if family.variational and not family.conditional:  # a VAE, one-layer or hierarchical (its codes: all groups)
        step("figures/classify.json", "classify", run)
        step("figures/anomaly_ood-fashion_mnist.json", "anomaly", run, "--ood", "fashion_mnist", "--iw-samples", 100)
        step("figures/anomaly_ood-mnist-validation.json", "anomaly", run, "--ood", "mnist")
        for corruption in ("blank", "noise", "invert"):
            step(f"figures/anomaly_corrupt-{corruption}.json", "anomaly", run, "--corrupt", corruption)
        step("figures/inpaint_random0.5.json", "inpaint", run, "--mask", "random:0.5")
        step("figures/inpaint_bottom.json", "inpaint", run, "--mask", "bottom")
    else:
        print(f"--model {kind}: classify, anomaly and inpaint skipped (measured for unconditional VAE runs)", flush=True)

    folder = RESULTS / args.out
    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    for rel in COPIED:
        src = run / rel
        if src.is_file():
            shutil.copyfile(src, folder / Path(rel).name)
            sources.append(str((folder / Path(rel).name).relative_to(ROOT)))
    config = json.loads((run / "config.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    evaluation = json.loads((run / "eval.json").read_text())
    metrics = {k: v for k, v in evaluation["metrics"].items() if k not in ("activity_per_dim", "kl_per_dim")}
    figures = {
        "run": run.name,
        "note": args.note,
        "train_command": config["meta"].get("command_line"),
        "train_commit": config["meta"].get("git_commit"),  # recorded by train since this script existed
        "train_versions": {k: config["meta"].get(k) for k in ("tfvae_version", "tensorflow_version", "keras_version")},
        "parameters": parameter_counts(run),
        **({"codebook_size": config["model"]["codebook_size"]} if registry.family(kind).discrete_codes else {}),
        "training": {k: summary.get(k) for k in ("epochs", "seconds", "artifacts_seconds", "seconds_per_epoch",
                                                  "train_images_per_second",
                                                  "best_val_neg_elbo")},
        "evaluation": {"protocol": evaluation["protocol"], "metrics": metrics, "seconds": evaluation["seconds"]},
    }
    write_result(args.out + "_run", figures, sources=sources)


if __name__ == "__main__":
    main()
