"""tfvae command line: train, evaluate, explore and deploy variational autoencoders.

Run as ``python cli.py`` from a checkout, or as ``tfvae`` after ``pip install .`` (the
same click group, :func:`cli`).

Thin by design: each command parses and checks its options, calls one tfvae function
and prints. TensorFlow is imported inside the commands, so ``--help`` is instant.
User mistakes end with one line on stderr ("error: ...") and exit status 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from tfvae.config import (ARCHITECTURES, AUTO_STEPS_PER_EXECUTION, BINARIZATIONS, LIKELIHOODS, LR_SCHEDULES,
                          OBJECTIVES, PRECISIONS, PRIORS, DataConfig, ModelConfig, RunConfig, TrainConfig)
from tfvae.errors import TfvaeError
from tfvae.models import registry

D_DATA, D_MODEL, D_TRAIN = DataConfig(), ModelConfig(), TrainConfig()


def _recipe_default(key: str) -> str:
    """``--help``'s default of a training option that a family's recipe sets: TrainConfig's
    value, and each family's own (e.g. ``100; --model hvae: 50``)."""
    own = [f"--model {f.name}: {dict(f.recipe)[key]}" for f in registry.families() if key in dict(f.recipe)]
    return "; ".join([str(getattr(D_TRAIN, key))] + own)


def _quiet_tensorflow(before_first_op=None):
    """:func:`tfvae.quiet.quiet_tensorflow` (imported here so ``--help`` stays TensorFlow-free)."""
    from tfvae.quiet import quiet_tensorflow

    quiet_tensorflow(before_first_op)


class OneLineErrors(click.Group):
    """A click group whose usage errors and tfvae errors print as a single line."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            return super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            code = exc.exit_code
        except click.Abort:
            click.echo("error: aborted", err=True)
            code = 130
        except click.ClickException as exc:
            where = f"{exc.ctx.command_path}: " if getattr(exc, "ctx", None) else ""
            click.echo(f"error: {where}{exc.format_message()}", err=True)
            code = exc.exit_code
        except TfvaeError as exc:
            click.echo(f"error: {exc}", err=True)
            code = exc.exit_code
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            code = 130
        except Exception as exc:  # noqa: BLE001 (faults of the machine: one line, not a traceback)
            words = list(args if args is not None else sys.argv[1:])
            message = fault_message(exc, [str(w) for w in words])
            if message is None or os.environ.get("TFVAE_DEBUG"):
                raise
            command = words[0] if words and words[0] in self.commands else None
            click.echo(f"error: {command + ': ' if command else ''}{message}", err=True)
            code = 1
        if standalone_mode:
            sys.exit(code)
        return code


def _program() -> str:
    """How this command was started, as a user would type it again: ``python cli.py`` from
    a checkout, else the installed command's name (``tfvae``)."""
    name = Path(sys.argv[0]).name
    return "python cli.py" if name == "cli.py" else name


# Options that size a command's memory, named in an out-of-memory error when the user gave them.
MEMORY_OPTIONS = ("--batch-size", "--mc-samples", "--train-iw-samples", "--iw-samples", "-k", "--chunk",
                  "--image-size", "--hidden-units", "--conv-filters", "--group-dims", "--hvae-width", "--group-maps",
                  "--latent-dim",
                  "--codebook-size", "--prior-width", "-n", "--samples", "--grid", "--steps")


def out_of_memory(words=()) -> str:
    """The one line for an allocation that failed: names the memory-sizing options the
    command line gave (:data:`MEMORY_OPTIONS`), else the usual ones."""
    given = [w.split("=", 1)[0] for w in words if w.split("=", 1)[0] in MEMORY_OPTIONS]
    given = list(dict.fromkeys(given))
    return (f"out of memory: lower {', '.join(given)}" if given else
            "out of memory: try a smaller --batch-size, --chunk or -n")


def fault_message(exc: BaseException, words=()):
    """One line for a fault of the machine (a full disk, a read-only or missing folder, no
    permission, out of memory, a file the OS cannot read), found anywhere in the
    exception's cause chain; None for anything else (a bug keeps its traceback).
    TensorFlow's own I/O errors (``tf.errors.OpError``) count too; its
    ``ResourceExhaustedError`` (an allocation that failed) is reported as out of memory,
    naming the options of ``words`` (the command line) that size memory."""
    seen = set()
    e = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, MemoryError) or (type(e).__module__.startswith("tensorflow")
                                          and type(e).__name__ == "ResourceExhaustedError"):
            return out_of_memory(words)
        if isinstance(e, OSError) and (e.strerror or e.errno):
            where = f" ({e.filename})" if e.filename else ""
            return f"cannot read or write a file: {e.strerror or os.strerror(e.errno)}{where}; nothing was overwritten"
        if type(e).__module__.startswith("tensorflow") and type(e).__name__ in (
                "PermissionDeniedError", "NotFoundError", "UnknownError",
                "FailedPreconditionError", "DataLossError", "InternalError"):
            import re

            text = re.sub(r"\{\{[^}]*\}\}\s*", "", " ".join(str(getattr(e, "message", e)).split()))[:200]
            return f"TensorFlow could not read or write a file ({type(e).__name__}: {text}); nothing was overwritten"
        e = e.__cause__ or e.__context__
    text = " ".join(str(exc).split())
    for marker in ("No space left on device", "Read-only file system", "Permission denied", "Disk quota exceeded"):
        if marker in text:
            return f"cannot write a file: {marker} ({text[:160]}); nothing was overwritten"
    return None


class SigmaType(click.ParamType):
    """A positive float, or the word 'learned'."""

    name = "FLOAT|learned"

    def convert(self, value, param, ctx):
        import math

        if value == "learned":
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if not (math.isfinite(number) and number > 0):
            self.fail(f"expected a positive finite number or 'learned', got {value!r}", param, ctx)
        return number


class Finite(click.FloatRange):
    """A finite float (NaN and ±Infinity refused) within click's FloatRange bounds."""

    def convert(self, value, param, ctx):
        import math

        rv = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(rv, param, ctx)


def _latest_run_dir(ctx, param, value):
    """RUN_DIR when given; otherwise the latest finished run under runs/, said on the first line."""
    if value is not None or ctx.resilient_parsing:
        return value
    from tfvae.latest import latest_run

    run = latest_run()
    click.echo(f"using {run}, the latest finished run")
    return str(run)


def _latest_export_dir(value, need="tflite/*/decoder*.tflite"):
    if value is not None:
        return value
    from tfvae.latest import latest_export

    export = latest_export(need=need)
    click.echo(f"using {export}, the newest export")
    return str(export)


class FamilyChoice(click.Choice):
    """``--model``: the families registered in :mod:`tfvae.models.registry` when the option
    is parsed (a family registered after this module was imported is a choice too)."""

    def __init__(self):
        super().__init__(())

    @property
    def choices(self):
        return registry.names()

    @choices.setter
    def choices(self, value):  # click.Choice.__init__ assigns it; the registry is the source
        pass


def _family_help() -> str:
    return "; ".join(f"{f.name}: {f.summary}" for f in registry.families()) + "."


RUN_DIR_ARGUMENT = click.argument("run_dir", type=click.Path(), required=False, callback=_latest_run_dir)
SEED = click.IntRange(0, 2 ** 32 - 1)
COUNT = click.IntRange(min=1)


def _int_list(ctx, param, value):
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None


def data_location_options(f):
    f = click.option("--image-dir", type=click.Path(file_okay=False), default=None,
                     help="Folder of image files (PNG, JPEG, BMP, GIF), streamed from disk: sub-folders are classes, "
                          "files directly in it are unlabelled; train/ and test/ sub-folders, when both exist, are "
                          "the splits. Replaces TFDS.")(f)
    f = click.option("--idx-dir", type=click.Path(file_okay=False), default=None,
                     help="Folder of MNIST-format IDX files (train-images-idx3-ubyte[.gz] ...); replaces TFDS.")(f)
    f = click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                     help="TFDS data folder (default: $TFDS_DATA_DIR, else TFDS's own default).")(f)
    return f


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli():
    """tfvae: variational autoencoders with TensorFlow Probability.

    \b
    python cli.py train --dataset mnist        train, write runs/<name>/ (--resume RUN_DIR continues one)
    python cli.py evaluate [RUN_DIR]           test NLL (importance-weighted), −ELBO, active units
    python cli.py train --model ae|cvae|pca    the lectures' model family (--objective iwae, --beta, --prior)
    python cli.py train --model hvae|vqvae     a hierarchical VAE; a VQ-VAE with a learned prior over its codes
    python cli.py sample [RUN_DIR] --out s.png draw from the prior (--label for a cvae)
    python cli.py traverse [RUN_DIR]           latent traversal (one dimension sweeps)
    python cli.py disentanglement [RUN_DIR]    MIG, DCI, FactorVAE and β-VAE scores (--dataset dsprites runs)
    python cli.py compare RUN_DIR ...          one table: NLL, −ELBO, reconstruction, sample quality
    python cli.py interpolate|latent|classify|anomaly|inpaint [RUN_DIR] ...   use the latent space
    python cli.py export [RUN_DIR] --tflite    SavedModels (TF Serving), TFLite decoders (--onnx: ONNX)
    python cli.py generate [EXPORT_DIR]        on-device generation with LiteRT or onnxruntime, no TensorFlow
    python cli.py demo [EXPORT_DIR]            browser demo (LiteRT.js) on 127.0.0.1

    Without RUN_DIR a command uses the latest finished run under runs/; without EXPORT_DIR,
    the newest export under exported/ (exported/mnist, a pretrained MNIST model, ships with tfvae).
    """


@cli.command()
@click.option("--dataset", default=D_DATA.dataset, show_default=True,
              help="TFDS dataset name (mnist, fashion_mnist, cifar10, ...); dsprites: 64×64 sprites with known factors, "
                   "rendered here (see README); or a label for --idx-dir data.")
@data_location_options
@click.option("--binarization", type=click.Choice(BINARIZATIONS), default=None,
              help="dynamic: fresh Bernoulli draw per epoch; static: threshold 0.5; none: grey levels. "
                   "[default: dynamic for bernoulli, none for gaussian]")
@click.option("--image-size", default=None,
              help="--image-dir only: H,W the images are brought to (other sizes are resized keeping the aspect "
                   "ratio and centre-cropped). [default: the most common size in the folder]")
@click.option("--channels", type=click.Choice(["1", "3"]), default=None,
              help="--image-dir only: 1 (grey) or 3 (colour). [default: the files' own; mixed folders need it]")
@click.option("--test-fraction", type=Finite(0, 1, min_open=True, max_open=True), default=D_DATA.test_fraction,
              show_default=True,
              help="--image-dir without train/ and test/ sub-folders: the share of each class held out for testing "
                   "(seeded by --split-seed).")
@click.option("--split-seed", type=SEED, default=D_DATA.split_seed, show_default=True,
              help="Seed of the validation split (and of an image folder's held-out test files).")
@click.option("--validation-size", type=click.IntRange(min=1), default=None,
              help="Images carved from the training split for validation. [default: the smaller of 5000 and a tenth "
                   "of the training split; config.json records the number used]")
@click.option("--max-image-pixels", type=click.IntRange(min=1), default=D_DATA.max_image_pixels, show_default=True,
              help="--image-dir only: files whose header declares more pixels (H·W) are skipped and counted, before "
                   "any decoding (a decompression bomb never reaches the decoder).")
@click.option("--max-train-examples", type=COUNT, default=None, help="Train on the first N training images only.")
@click.option("--model", type=FamilyChoice(), default=D_MODEL.model, show_default=True, help=_family_help())
@click.option("--preset", default=None,
              help="Start from a named recipe in tfvae/presets/ (e.g. mnist-best); options given here override it.")
@click.option("--arch", type=click.Choice(ARCHITECTURES), default=D_MODEL.arch, show_default=True,
              help="Encoder/decoder architecture, sized from the image shape.")
@click.option("--latent-dim", type=click.IntRange(1, 4096), default=D_MODEL.latent_dim, show_default=True, help="Dimension of z.")
@click.option("--likelihood", type=click.Choice(LIKELIHOODS), default=D_MODEL.likelihood, show_default=True,
              help="p(x|z): Bernoulli (logits), Gaussian, or logistic: the discretized logistic of 8-bit pixels "
                   "(Salimans et al. 2017), for grey-level and colour images.")
@click.option("--sigma", type=SigmaType(), default=D_MODEL.sigma, show_default=True,
              help="Gaussian σ: a fixed positive number (σ² balances reconstruction against KL) or 'learned' (per pixel).")
@click.option("--hidden-units", callback=_int_list, default=None,
              help="Dense layer widths, comma-separated. [default: 512,256 for mlp; 512 for conv and resnet]")
@click.option("--conv-filters", callback=_int_list, default=None,
              help="Filters of the stride-2 convolutions, comma-separated (conv and resnet). [default: 32,64]")
@click.option("--res-blocks", type=click.IntRange(1, 64), default=D_MODEL.res_blocks, show_default=True,
              help="--arch resnet: residual blocks (two 3×3 convolutions each) after each stride-2 convolution, "
                   "in the encoder and mirrored in the decoder.")
@click.option("--group-dims", callback=_int_list, default=None,
              help="--model hvae: dimensions of the latent groups, top group first, comma-separated; --latent-dim "
                   "is their sum. [default: 4,8,16,32,64, LVAE's MNIST model (Sønderby et al. 2016)]")
@click.option("--hvae-width", type=click.IntRange(1, 65536), default=D_MODEL.hvae_width, show_default=True,
              help="--model hvae: width of the top-down state and of the bottom-up features.")
@click.option("--group-maps", callback=_int_list, default=None,
              help="--model hvae: channels of spatial latent groups below the vector groups, comma-separated, "
                   "coarsest first, one per resolution of the convolutional decoder (MNIST: 7×7, then 14×14; NVAE). "
                   "Each adds height × width × channels to the latent size. [default: none]")
@click.option("--posterior-flows", type=click.IntRange(0, 64), default=D_MODEL.posterior_flows, show_default=True,
              help="--model hvae: inverse autoregressive flow steps on each vector group's posterior (Kingma et al. "
                   "2016); 0: Gaussian posteriors.")
@click.option("--codebook-size", type=click.IntRange(min=2), default=D_MODEL.codebook_size, show_default=True,
              help="--model vqvae: K, the vectors of the codebook (each of dimension --latent-dim).")
@click.option("--commitment", type=Finite(min=0), default=D_MODEL.commitment, show_default=True,
              help="--model vqvae: weight β_c of the commitment loss ‖z_e − sg(z_q)‖².")
@click.option("--codebook-decay", type=Finite(0, 1, min_open=True, max_open=True), default=D_MODEL.codebook_decay,
              show_default=True, help="--model vqvae: decay γ of the codebook's moving averages (Razavi et al. 2019).")
@click.option("--prior-width", type=click.IntRange(4, 4096), default=D_MODEL.prior_width, show_default=True,
              help="--model vqvae: width of the autoregressive prior over the code grid (a multiple of 4).")
@click.option("--prior-layers", type=click.IntRange(1, 64), default=D_MODEL.prior_layers, show_default=True,
              help="--model vqvae: transformer blocks of the prior.")
@click.option("--prior-epochs", type=click.IntRange(1, 100000), default=D_TRAIN.prior_epochs, show_default=True,
              help="--model vqvae: epochs of the prior's training on the training split's codes (after --epochs "
                   "of the autoencoder).")
@click.option("--prior-learning-rate", type=Finite(min=0, min_open=True), default=D_TRAIN.prior_learning_rate,
              show_default=True, help="--model vqvae: the prior's Adam step size (cosine decay to 1%).")
@click.option("--prior", type=click.Choice(PRIORS), default=D_MODEL.prior, show_default=True,
              help="p(z): N(0, I); mog: learned mixture of Gaussians; vamp: VampPrior (Tomczak & Welling 2018).")
@click.option("--prior-components", type=click.IntRange(0, 100000), default=D_MODEL.prior_components, show_default=True,
              help="Mixture components (mog) or pseudo-inputs (vamp); 0: 10 for mog, 100 for vamp.")
@click.option("--objective", type=click.Choice(OBJECTIVES), default=D_TRAIN.objective, show_default=True,
              help="elbo, or iwae: the importance-weighted bound with --train-iw-samples K (Burda et al. 2015).")
@click.option("--train-iw-samples", type=click.IntRange(1, 100000), default=D_TRAIN.train_iw_samples, show_default=True,
              help="K importance samples per image of the iwae objective.")
@click.option("--free-bits", type=Finite(min=0), default=D_TRAIN.free_bits,
              show_default=_recipe_default("free_bits"),
              help="λ nats per latent dimension: the loss uses Σ_d max(λ, KL_d) (Kingma et al. 2016); 0: off.")
@click.option("--ema-decay", type=Finite(0, 1, max_open=True), default=D_TRAIN.ema_decay,
              show_default=_recipe_default("ema_decay"),
              help="Exponential moving average of the weights (e.g. 0.999), used for validation, checkpoints, "
                   "evaluation and export; 0: off.")
@click.option("--weight-decay", type=Finite(min=0), default=D_TRAIN.weight_decay, show_default=True,
              help="Decoupled weight decay of the kernels (AdamW, Loshchilov & Hutter 2019); 0: Adam.")
@click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default=D_TRAIN.lr_schedule,
              show_default=_recipe_default("lr_schedule"),
              help="constant, or cosine decay to 1% of --learning-rate over all epochs.")
@click.option("--steps-per-execution", type=COUNT, default=D_TRAIN.steps_per_execution,
              help=f"Optimizer steps per tf.function call (lowered to the largest divisor of one epoch's steps "
                   f"not above it, so an epoch is the same updates; 1 with --strategy multiworker). "
                   f"[default: {AUTO_STEPS_PER_EXECUTION}]")
@click.option("--precision", type=click.Choice(PRECISIONS), default=D_TRAIN.precision, show_default=True,
              help="Training arithmetic of the hidden layers: float32, or mixed precision (mixed_bfloat16 on CPUs "
                   "with AVX512-BF16/AMX and GPUs of compute capability 8.0+; mixed_float16 on GPUs). Refused where "
                   "the machine would emulate it. Variables, outputs and evaluation stay float32.")
@click.option("--beta", type=Finite(min=0), default=D_TRAIN.beta, show_default=True, help="KL weight β (β-VAE; for --model btcvae, the total correlation's weight); 1 = ELBO.")
@click.option("--kl-warmup-epochs", type=click.IntRange(min=0), default=D_TRAIN.kl_warmup_epochs, show_default=True,
              help="Raise the KL weight linearly from 0 to β over this many epochs.")
@click.option("--mc-samples", type=click.IntRange(1, 100000), default=D_TRAIN.mc_samples, show_default=True,
              help="Reparameterized z samples per image in the reconstruction term.")
@click.option("--epochs", type=click.IntRange(1, 1000000), default=D_TRAIN.epochs, show_default=_recipe_default("epochs"),
              help="Passes over the training split.")
@click.option("--batch-size", type=click.IntRange(1, 1000000), default=D_TRAIN.batch_size, show_default=True, help="Images per step.")
@click.option("--learning-rate", type=Finite(min=0, min_open=True), default=D_TRAIN.learning_rate, show_default=True, help="Adam step size.")
@click.option("--seed", type=SEED, default=D_TRAIN.seed, show_default=True,
              help="Seed of initialisation, shuffling, binarization and z noise.")
@click.option("--jit/--no-jit", default=D_TRAIN.jit, show_default=True, help="Compile the steps with XLA.")
@click.option("--deterministic", is_flag=True,
              help="TensorFlow op determinism: the same seed gives bit-identical weights (slower).")
@click.option("--strategy", type=click.Choice(["default", "mirrored", "multiworker"]), default="default",
              show_default=True,
              help="tf.distribute strategy: one device; MirroredStrategy over local GPUs (or --devices); "
                   "MultiWorkerMirroredStrategy over the workers TF_CONFIG names (run the same command on each; "
                   "only the chief, worker 0, writes the run directory). --batch-size is the global batch.")
@click.option("--worker-timeout", type=click.FloatRange(1, 86400), default=300, show_default=True,
              help="--strategy multiworker: seconds to wait for the other workers TF_CONFIG names before giving up.")
@click.option("--devices", default=None, help="Comma-separated devices for --strategy mirrored, e.g. /gpu:0,/gpu:1.")
@click.option("--run-dir", type=click.Path(), default=None,
              help="Output folder; must not exist. [default: runs/<dataset>-<arch>-z<dim>-<time>]")
@click.option("--tensorboard/--no-tensorboard", default=True, show_default=True,
              help="Write TensorBoard logs to RUN_DIR/tensorboard (view with: tensorboard --logdir runs).")
@click.option("--resume", "resume_dir", type=click.Path(), default=None,
              help="Continue the interrupted run in this folder from its last completed epoch, with its own "
                   "config.json; only --learning-rate (e.g. lower, after a divergence), --strategy, --devices "
                   "and --deterministic may be given with it.")
def train(dataset, data_dir, idx_dir, image_dir, image_size, channels, test_fraction, split_seed, binarization,
          validation_size, max_image_pixels, max_train_examples, model, preset, arch,
          latent_dim, likelihood, sigma, hidden_units, conv_filters, res_blocks, group_dims, hvae_width, group_maps,
          posterior_flows, codebook_size,
          commitment, codebook_decay, prior_width, prior_layers, prior_epochs, prior_learning_rate, prior,
          prior_components, objective,
          train_iw_samples, free_bits, ema_decay, weight_decay, lr_schedule, steps_per_execution, precision, beta, kl_warmup_epochs,
          mc_samples, epochs, batch_size, learning_rate, seed, jit, deterministic, strategy, worker_timeout, devices,
          run_dir,
          tensorboard, resume_dir):
    """Train a VAE and write a run directory (or continue one with --resume).

    Ctrl-C or SIGTERM stops after the current epoch's checkpoint and backup (exit 130 or
    143; continue with --resume); a second signal stops at once. A loss that becomes NaN or Inf stops training with
    exit status 3, keeping the last good checkpoint. The run directory holds config.json, checkpoints/ (best and last weights),
    metrics.csv (a row per epoch: −ELBO, reconstruction and KL in nats per image, for
    train and validation), summary.json, figures/ (reconstructions.png, samples.png,
    loss.png: rewritten every epoch, the final ones from the best checkpoint) and
    tensorboard/ (tensorboard --logdir runs). Without a terminal (a pipe, a CI log) it
    prints one line per epoch instead of a progress bar.
    """
    values = dict(locals())
    from click.core import ParameterSource

    source = click.get_current_context().get_parameter_source
    if image_dir is not None:
        if source("dataset") == ParameterSource.COMMANDLINE:
            raise TfvaeError("--image-dir and --dataset are two sources of images; give one (the run is named "
                             "after the folder)")
        values["dataset"] = Path(image_dir).resolve().name or "images"
        values["image_dir"] = str(Path(image_dir).resolve())
    else:
        given = [o for o, k in (("--image-size", "image_size"), ("--channels", "channels"),
                                ("--test-fraction", "test_fraction")) if source(k) == ParameterSource.COMMANDLINE]
        if given:
            raise TfvaeError(f"{given[0]} applies to --image-dir data only")
    if image_size is not None:
        from tfvae.folder import parse_image_size

        values["image_size"] = parse_image_size(image_size)
    values["channels"] = None if channels is None else int(channels)
    chosen = set()  # options the command line or the preset set
    if preset is not None:
        from tfvae.config import load_preset

        for section in load_preset(preset).values():
            for key, value in section.items():
                if source(key) != ParameterSource.COMMANDLINE:
                    values[key] = value
                    chosen.add(key)
    for key, value in registry.recipe_for(values["model"]).items():  # the family's recipe fills in the rest
        if source(key) != ParameterSource.COMMANDLINE and key not in chosen:
            values[key] = value
    if resume_dir is None and registry.family(values["model"]).latent_groups \
            and source("latent_dim") == ParameterSource.COMMANDLINE:
        default = "" if source("model") == ParameterSource.COMMANDLINE else f" (the default model is {values['model']})"
        raise TfvaeError(f"--latent-dim of an hvae is the sum of --group-dims; give --group-dims instead, or "
                         f"--model vae for a one-layer VAE{default}")
    cfg = RunConfig.from_options(values)
    if preset is not None:
        cfg.meta["preset"] = preset
    device_list = [d.strip() for d in devices.split(",") if d.strip()] if devices else None
    if device_list and strategy != "mirrored":
        raise TfvaeError("--devices needs --strategy mirrored")
    resume_learning_rate = None
    if resume_dir is not None:
        from tfvae.rundir import read_config

        ctx = click.get_current_context()
        given = [p.opts[0] for p in ctx.command.params
                 if ctx.get_parameter_source(p.name) == ParameterSource.COMMANDLINE
                 and p.name not in ("resume_dir", "learning_rate", "strategy", "devices", "deterministic",
                                    "tensorboard", "worker_timeout")]
        if given:
            raise TfvaeError(f"--resume continues the run with its own config.json; only --learning-rate, "
                             f"--strategy, --devices, --deterministic and --no-tensorboard may be given with it, "
                             f"not {', '.join(given)}")
        if ctx.get_parameter_source("learning_rate") == ParameterSource.COMMANDLINE:
            if not learning_rate > 0:
                raise TfvaeError(f"--learning-rate must be positive, got {learning_rate!r}")
            resume_learning_rate = learning_rate
        read_config(resume_dir)  # "not a run" fails before TensorFlow starts
    else:
        cfg.resolved().validate()  # fail on bad options before TensorFlow starts
    start_workers = None
    if strategy == "multiworker":
        from tfvae.training.multiworker import cluster_from_env, multiworker_strategy, refuse_unsupported

        from tfvae.training import multiworker

        cluster_from_env()  # a bad TF_CONFIG fails here, in one line
        multiworker.WORKER_TIMEOUT = worker_timeout
        multiworker.keep_stderr()
        if resume_dir is None:  # before this worker waits for the others
            refuse_unsupported(jit, steps_per_execution)
        start_workers = multiworker_strategy
    _quiet_tensorflow(start_workers)
    from tfvae.training import train as run_training

    summary = run_training(cfg, resume_dir or run_dir, command_line=" ".join([_program()] + sys.argv[1:]),
                           resume=resume_dir is not None, strategy=strategy, devices=device_list,
                           deterministic=deterministic, resume_learning_rate=resume_learning_rate,
                           tensorboard=tensorboard)
    if "worker" in summary:
        click.echo(f"worker finished; the chief wrote {summary['run_dir']}")
        return
    click.echo(f"run directory: {summary['run_dir']}")
    if "val_log_density_grey" in summary:
        click.echo(f"PPCA fitted in {summary['seconds']:.1f} s; validation log-density of grey-level images "
                   f"{summary['val_log_density_grey']:.1f} nats/image")
    else:
        best = (f"best validation −ELBO {summary['best_val_neg_elbo']:.2f} nats/image"
                if summary.get("best_val_neg_elbo") is not None
                else f"best {summary['checkpoint_monitor']} {summary['best_val_monitor']:.2f} nats/image")
        after = summary.get("artifacts_seconds") or 0.0
        click.echo(f"{best}; {summary['seconds_per_epoch']:.1f} s/epoch, "
                   f"{summary['train_images_per_second']:.0f} images/s, {(summary['seconds'] + after) / 60:.1f} min "
                   f"in all" + (f" ({after / 60:.1f} min of it after the epochs, fitting the model's learned prior or "
                                f"code distribution)" if after >= 1 else ""))
    click.echo(f"next: python cli.py evaluate {summary['run_dir']}")


@cli.command()
@RUN_DIR_ARGUMENT
@click.option("--iw-samples", "-k", type=click.IntRange(1, 1000000), default=1000, show_default=True,
              help="Importance samples K per image for the NLL (Burda et al. 2015).")
@click.option("--max-examples", type=click.IntRange(min=1), default=None, help="Evaluate the first N test images only.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the importance samples.")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True,
              help="Weights to evaluate: best validation −ELBO, or the last epoch.")
@click.option("--chunk", type=click.IntRange(1, 1 << 22), default=4096, show_default=True,
              help="Decoder inputs per batched call (bounds memory).")
@click.option("--strategy", type=click.Choice(["default", "multiworker"]), default="default", show_default=True,
              help="multiworker: split the test images over the workers TF_CONFIG names (run the same command on "
                   "each); the chief writes eval.json, equal to one machine's.")
@click.option("--worker-timeout", type=click.FloatRange(1, 86400), default=300, show_default=True,
              help="--strategy multiworker: seconds to wait for the other workers TF_CONFIG names before giving up.")
@data_location_options
def evaluate(run_dir, iw_samples, max_examples, seed, checkpoint, chunk, strategy, worker_timeout, data_dir, idx_dir,
             image_dir):
    """Evaluate RUN_DIR on the test split and write RUN_DIR/eval.json.

    Reports −ELBO, reconstruction and KL, the importance-weighted NLL with its standard
    error, active units and the KL of each latent dimension (nats per image). Image i's
    importance samples come from default_rng([seed, i]), so --chunk changes speed and
    memory, not the result. eval.json records every setting (K, images, seeds, checkpoint
    and its SHA-256); it replaces an earlier eval.json of the run.
    """
    from tfvae.rundir import read_config

    read_config(run_dir)  # "not a run" fails before TensorFlow starts
    start_workers = None
    if strategy == "multiworker":
        from tfvae.training import multiworker

        multiworker.cluster_from_env()
        multiworker.WORKER_TIMEOUT = worker_timeout
        multiworker.keep_stderr()
        start_workers = multiworker.multiworker_strategy
    _quiet_tensorflow(start_workers)
    from tfvae.evaluate import evaluate_run, format_report

    report = evaluate_run(run_dir, iw_samples=iw_samples, max_examples=max_examples, seed=seed,
                          checkpoint=checkpoint, data_dir=data_dir, idx_dir=idx_dir, chunk=chunk, image_dir=image_dir,
                          strategy=strategy, progress=strategy == "default")
    click.echo(format_report(report))
    if strategy == "default" or _is_chief_process():
        click.echo(f"written: {os.path.join(run_dir, 'eval.json')}")


def _is_chief_process() -> bool:
    from tfvae.training.multiworker import is_chief, multiworker_strategy

    return is_chief(multiworker_strategy())


@cli.command()
@RUN_DIR_ARGUMENT
@click.option("-n", "num", type=click.IntRange(1, 10000), default=64, show_default=True, help="Number of samples.")
@click.option("--out", type=click.Path(dir_okay=False), default="samples.png", show_default=True, help="PNG file to write.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the prior draws.")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@click.option("--label", type=click.IntRange(min=0), default=None,
              help="Conditional VAE (--model cvae) only: generate this class. Without it, a cvae's grid has one row "
                   "per class.")
@click.option("--source", type=click.Choice(["prior", "fitted", "uniform"]), default="prior", show_default=True,
              help="Where z comes from: the prior p(z) (a VQ-VAE's learned autoregressive prior); fitted: an "
                   "autoencoder's Gaussian fitted to its training codes; uniform: a VQ-VAE's codes drawn uniformly.")
def sample(run_dir, num, out, seed, checkpoint, force, label, source):
    """Draw z from the prior, decode the likelihood means E[x|z] and save a grid."""
    from tfvae.rundir import read_config
    from tfvae.rundir import check_label

    cfg = read_config(run_dir)
    if label is not None:
        check_label(cfg, label)
    if source == "fitted":
        registry.require(cfg, "fitted_codes", "--source fitted", "a Gaussian fitted to its training codes")
    if source == "uniform":
        registry.require(cfg, "discrete_codes", "--source uniform", "discrete codes")
    _quiet_tensorflow()
    from tfvae.sample import save_samples

    path = save_samples(run_dir, num, out, seed=seed, checkpoint=checkpoint, force=force, label=label, source=source)
    click.echo(f"written: {path}")


@cli.command()
@RUN_DIR_ARGUMENT
@click.option("--name", default=None, help="Export name. [default: the run directory's name]")
@click.option("--out", "out_root", type=click.Path(file_okay=False), default="exported", show_default=True,
              help="Export root.")
@click.option("--tflite", is_flag=True, help="Also write TFLite decoders (dynamic batch and batch 1).")
@click.option("--quantize", multiple=True, type=click.Choice(["float16", "dynamic", "int8"]),
              help="Add a quantized TFLite decoder (repeatable); needs --tflite.")
@click.option("--browser-weights", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
              help="Weights of decoder_b1.tflite, the browser demo's decoder (float16: half the download); "
                   "needs --tflite.")
@click.option("--int8-scales", type=click.Choice(["per-channel", "per-tensor"]), default="per-channel",
              show_default=True,
              help="Quantization scales of decoder_int8.tflite: one per output channel, or one per weight tensor "
                   "(a smaller file); needs --quantize int8.")
@click.option("--onnx", is_flag=True, help="Also write ONNX decoder and encoder (tf2onnx, opset 17) for onnxruntime.")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
def export(run_dir, name, out_root, tflite, quantize, browser_weights, int8_scales, onnx, checkpoint):
    """Export RUN_DIR's decoder and encoder as a new version (RUN_DIR: the latest finished run).

    \b
    OUT/NAME/decoder/<v>/   SavedModel (TF Serving: model base path OUT/NAME/decoder)
    OUT/NAME/encoder/<v>/   SavedModel
    OUT/NAME/tflite/<v>/    decoder*.tflite, model_card.json (every file's size and SHA-256)
    OUT/NAME/onnx/<v>/      decoder.onnx, encoder.onnx (--onnx)

    Versions are never overwritten: each export adds the next number.
    """
    from tfvae.rundir import read_config

    registry.require(read_config(run_dir), "exportable_decoder", "export", "an exportable (unconditional) decoder")
    if quantize and not tflite:
        raise TfvaeError("--quantize needs --tflite")
    if browser_weights != "float32" and not tflite:
        raise TfvaeError("--browser-weights needs --tflite")
    if int8_scales != "per-channel" and "int8" not in quantize:
        raise TfvaeError("--int8-scales needs --quantize int8")
    _quiet_tensorflow()
    from tfvae.export import export_run

    card = export_run(run_dir, out_root=out_root, name=name, tflite=tflite, quantize=quantize, checkpoint=checkpoint,
                      onnx=onnx, browser_weights=browser_weights, int8_scales=int8_scales)
    click.echo(f"exported version {card['version']} to {card['export_dir']}")
    for f in card["files"]:
        if f["path"].endswith((".tflite", ".onnx", "saved_model.pb")):
            click.echo(f"  {f['path']:<40} {f['bytes']:>10,d} bytes")


@cli.command()
@click.argument("export_dir", type=click.Path(), required=False)
@click.option("-n", "num", type=click.IntRange(1, 10000), default=16, show_default=True, help="Number of images.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of z ~ p(z) (numpy).")
@click.option("--runtime", type=click.Choice(["litert", "onnx"]), default="litert", show_default=True,
              help="litert: the TFLite decoder (ai-edge-litert); onnx: decoder.onnx with onnxruntime (float32).")
@click.option("--variant", default="auto", show_default=True,
              help="LiteRT decoder: float32, float16, dynamic or int8 (the quantized ones must have been exported); "
                   "auto: the first of these the export holds.")
@click.option("--out", type=click.Path(dir_okay=False), default="grid.png", show_default=True, help="PNG file to write.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def generate(export_dir, num, seed, runtime, variant, out, force):
    """Generate images on-device style: LiteRT or onnxruntime + numpy, no TensorFlow.

    A VQ-VAE export's codes are drawn from its exported prior, one grid position at a time.

    Reads EXPORT_DIR/tflite/<latest>/decoder[_VARIANT].tflite (or onnx/<latest>/decoder.onnx)
    after checking every file of the version against the SHA-256 in its model card and the
    decoder's shapes against the card. EXPORT_DIR: the newest export under exported/.
    """
    from tfvae.lite import save_generated

    export_dir = _latest_export_dir(export_dir, "onnx/*/decoder.onnx" if runtime == "onnx" else "tflite/*/decoder*.tflite")
    path, used = save_generated(export_dir, num, out, seed=seed, variant=variant, force=force, runtime=runtime)
    click.echo(f"written: {path} ({used['runtime']}, {Path(used['file']).name})")


@cli.command()
@click.argument("export_dir", type=click.Path(), required=False)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port on 127.0.0.1 (0: any free port).")
def demo(export_dir, port):
    """Serve the browser demo (LiteRT.js + decoder_b1.tflite) on 127.0.0.1 only.

    Serves only the demo's own files (no path leaves its route's folder) to requests whose
    Host is 127.0.0.1 or localhost; the export is verified against its model card first.
    Needs LiteRT.js installed once: (cd demo/web && npm ci). Stop with Ctrl-C.
    EXPORT_DIR: the newest export under exported/ with a batch-1 decoder.
    """
    from tfvae.demo import make_server

    export_dir = _latest_export_dir(export_dir, "tflite/*/decoder_b1.tflite")
    server = make_server(export_dir, port)
    click.echo(f"serving the tfvae demo on http://127.0.0.1:{server.server_address[1]}/  (Ctrl-C stops)")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        server.server_close()


# A hierarchical VAE's code is the posterior of all its groups in the noise's coordinates
# (its encoder's mean path, [B, D] over the concatenated groups; tfvae.models.hvae), which its decoder maps back.
CODES = (dict(encoder=True, conditional=False), "an unconditional encoder")
BOUND_OF_CODES = (dict(encoder=True, conditional=False, evaluation="iw_nll"),
                  "a likelihood bound and an unconditional encoder")
ENCODER = (dict(encoder=True), "a trained encoder")


def _run_command_prelude(run_dir, need=CODES):
    """Check the run (before TensorFlow starts) and that its family has the capabilities
    ``need`` = (capabilities, what they are in words); lock the run when the command writes
    into it."""
    from tfvae.rundir import read_config

    cfg = read_config(run_dir)  # "not a run" fails before TensorFlow starts
    ctx = click.get_current_context()
    wanted, what = need
    if cfg.model.model not in registry.with_capability(**wanted):
        raise TfvaeError(f"{ctx.command.name} needs a model with {what} (--model "
                         f"{' or '.join(registry.with_capability(**wanted))}); {run_dir} is --model {cfg.model.model}")
    out = ctx.params.get("out")
    if out is None or Path(out).resolve().is_relative_to(Path(run_dir).resolve()):
        from tfvae.locks import folder_lock

        # It writes into the run: one writer of a run at a time (released when the command ends).
        ctx.with_resource(folder_lock(run_dir, ctx.command.name))
    _quiet_tensorflow()


@cli.command()
@RUN_DIR_ARGUMENT
@click.option("--from", "start", type=click.IntRange(min=0), required=True, help="Index of the first test image.")
@click.option("--to", "end", type=click.IntRange(min=0), required=True, help="Index of the last test image.")
@click.option("--steps", type=click.IntRange(2, 1000), default=10, show_default=True, help="Decoded points on the path (≥ 2).")
@click.option("--method", type=click.Choice(["linear", "slerp"]), default="linear", show_default=True,
              help="Straight line, or spherical interpolation (stays in the prior's typical set).")
@click.option("--analogy", type=click.IntRange(min=0), nargs=3, default=None, metavar="A B C",
              help="Also decode z_C + (z_B − z_A) for test images A, B, C.")
@click.option("--out", type=click.Path(), default=None, help="Output folder. [default: RUN_DIR/figures]")
def interpolate(run_dir, start, end, steps, method, analogy, out):
    """Decode the path between the posterior means of two test images."""
    _run_command_prelude(run_dir)
    from tfvae.latent import interpolate as run

    result = run(run_dir, start, end, steps=steps, method=method, analogy=analogy, out=out)
    click.echo(f"written: interpolation.png, interpolation.json ({result['steps']} steps, {method})")


@cli.command()
@RUN_DIR_ARGUMENT
@click.option("--tsne", is_flag=True, help="Also a t-SNE map (scikit-learn; slower).")
@click.option("--grid", type=click.IntRange(2, 200), default=20, show_default=True, help="Manifold grid size for a 2-D latent.")
@click.option("--out", type=click.Path(), default=None, help="Output folder. [default: RUN_DIR/figures]")
def latent(run_dir, tsne, grid, out):
    """Map the test set's posterior means in 2-D, coloured by label (and the manifold for a 2-D latent)."""
    _run_command_prelude(run_dir)
    from tfvae.latent import latent_map

    result = latent_map(run_dir, tsne=tsne, grid=grid, out=out)
    click.echo(f"written: {', '.join(result['figures'])}, latent_map.json")


def _label_counts(ctx, param, value):
    counts = []
    for item in value.split(","):
        item = item.strip()
        if item == "all":
            counts.append("all")
        else:
            try:
                counts.append(int(item))
            except ValueError:
                raise click.BadParameter(f"expected integers or 'all', comma-separated; got {item!r}") from None
    return counts


@cli.command()
@RUN_DIR_ARGUMENT
@click.option("--labels", callback=_label_counts, default="100,1000,all", show_default=True,
              help="Labelled training images per experiment, comma-separated, or 'all'.")
@click.option("--seeds", type=click.IntRange(1, 100), default=5, show_default=True,
              help="Random labelled subsets per count (mean ± std).")
@click.option("--out", type=click.Path(), default=None, help="Output folder. [default: RUN_DIR/figures]")
def classify(run_dir, labels, seeds, out):
    """Classify with few labels: encoder means vs raw pixels vs PCA (logistic regression, k-NN)."""
    _run_command_prelude(run_dir)
    from tfvae.latent import classify as run, format_classify

    result = run(run_dir, label_counts=labels, seeds=seeds, out=out)
    click.echo(format_classify(result))
    click.echo("test accuracy; written: classify.json")


@cli.command()
@RUN_DIR_ARGUMENT
@click.option("--ood", default=None, help="Score this TFDS dataset's test split against the run's test split "
                                          "(the run's own dataset: its validation split).")
@click.option("--corrupt", "corruption", type=click.Choice(["noise", "blank", "invert"]), default=None,
              help="Score corrupted copies of the test split instead.")
@click.option("--iw-samples", type=click.IntRange(0, 1000000), default=0, show_default=True,
              help="Also score by the importance-weighted NLL with K samples (0: −ELBO only).")
@click.option("--max-examples", type=click.IntRange(min=1), default=None, help="Images per set.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="TFDS folder of the --ood dataset.")
@click.option("--out", type=click.Path(), default=None, help="Output folder. [default: RUN_DIR/figures]")
def anomaly(run_dir, ood, corruption, iw_samples, max_examples, data_dir, out):
    """Flag unlikely inputs: AUROC / AUPRC of −ELBO (and NLL) scores, test split vs another set."""
    if (ood is None) == (corruption is None):
        raise TfvaeError("give exactly one of --ood DATASET or --corrupt noise|blank|invert")
    if ood is not None and not ood.strip():
        raise TfvaeError(f"--ood must name a TFDS dataset (e.g. fashion_mnist), got {ood!r}")
    _run_command_prelude(run_dir, BOUND_OF_CODES)
    from tfvae.anomaly import anomaly as run

    result = run(run_dir, ood=ood, corruption=corruption, iw_samples=iw_samples, max_examples=max_examples,
                 out=out, data_dir=data_dir)
    for key, s in result["scores"].items():
        click.echo(f"{key:>9}: AUROC {s['auroc']:.3f}  AUPRC {s['auprc']:.3f}  mean score {s['mean_in']:.1f} "
                   f"({result['protocol']['in_distribution']}) vs {s['mean_other']:.1f} ({result['protocol']['other']})")
    click.echo(f"written: {result['figure']} and .json")


@cli.command()
@RUN_DIR_ARGUMENT
@click.option("--mask", "mask_spec", default="bottom", show_default=True,
              help="Missing pixels: top, bottom, left, right (half the image) or random:P.")
@click.option("-n", "num", type=click.IntRange(1, 10000), default=8, show_default=True, help="Test images to complete.")
@click.option("--steps", type=click.IntRange(1, 10000), default=20, show_default=True, help="Encode → decode iterations.")
@click.option("--out", type=click.Path(), default=None, help="Output folder. [default: RUN_DIR/figures]")
def inpaint(run_dir, mask_spec, num, steps, out):
    """Fill in missing pixels by iterating encode → decode, keeping the observed ones."""
    _run_command_prelude(run_dir)
    from tfvae.anomaly import inpaint as run, parse_mask

    parse_mask(mask_spec, (4, 4, 1))  # a malformed --mask fails before the data loads

    r = run(run_dir, mask_spec, n=num, steps=steps, out=out)
    click.echo(f"missing pixels: completion MSE {r['completion']['mse_per_missing_pixel']:.4f} per pixel, "
               f"BCE {r['completion']['bce_nats_per_image']:.1f} nats/image; mean-image baseline MSE "
               f"{r['mean_image_baseline']['mse_per_missing_pixel']:.4f}, BCE "
               f"{r['mean_image_baseline']['bce_nats_per_image']:.1f} nats/image")


@cli.command()
@RUN_DIR_ARGUMENT
@click.option("--dims", type=click.IntRange(1, 4096), default=10, show_default=True, help="Latent dimensions shown (largest KL first).")
@click.option("--steps", type=click.IntRange(2, 1000), default=9, show_default=True, help="Values in each sweep (≥ 2).")
@click.option("--limit", type=Finite(min=0, min_open=True, max=1000), default=3.0, show_default=True, help="Sweep z_d from −LIMIT to LIMIT.")
@click.option("--image", type=click.IntRange(min=0), default=0, show_default=True,
              help="Test image whose posterior mean fixes the other dimensions.")
@click.option("--out", type=click.Path(), default=None, help="Output folder. [default: RUN_DIR/figures]")
def traverse(run_dir, dims, steps, limit, image, out):
    """Latent traversal (β-VAE figure): decode while one dimension sweeps, the others fixed.

    Writes traverse.png (a row per dimension, most informative first) and traverse.json.
    """
    _run_command_prelude(run_dir, ENCODER)
    from tfvae.latent import traverse as run_traverse

    result = run_traverse(run_dir, out=out, dims=dims, steps=steps, limit=limit, image=image)
    click.echo(f"dimensions {result['dimensions']} ({result['measure']})")
    click.echo(f"written: {result['figure']}")


@cli.command()
@RUN_DIR_ARGUMENT
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of every draw (factors, batches, classifiers).")
@click.option("--points", type=click.IntRange(100, 10 ** 7), default=10000, show_default=True,
              help="Points for MIG and DCI's training set (DCI's test set: half as many).")
@click.option("--votes", type=click.IntRange(10, 10 ** 6), default=10000, show_default=True,
              help="Training votes (FactorVAE score) and points (β-VAE score), of 64 images each; evaluation: half "
                   "(10,000 and 5,000: disentanglement_lib's study). Dimensions with standard deviation under 0.05 "
                   "are left out of the FactorVAE score.")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
def disentanglement(run_dir, seed, points, votes, checkpoint):
    """MIG, DCI, FactorVAE score and β-VAE score of a run trained on --dataset dsprites.

    Scores the posterior means against the factors that rendered each image, writes
    RUN_DIR/disentanglement.json and RUN_DIR/figures/disentanglement_traverse.png (the most
    informative dimensions, each labelled by the factor it captures best).
    """
    from tfvae.disentanglement import Protocol, check_run, evaluate_run, format_result
    from tfvae.locks import folder_lock
    from tfvae.rundir import read_config

    check_run(read_config(run_dir), run_dir)
    click.get_current_context().with_resource(folder_lock(run_dir, "disentanglement"))
    _quiet_tensorflow()
    result = evaluate_run(run_dir, Protocol(seed=seed, points=points, votes=votes), checkpoint=checkpoint)
    click.echo(format_result(result))
    click.echo(f"written: {Path(run_dir) / 'disentanglement.json'}, {result['traversal']['figure']}")


@cli.command()
@click.argument("run_dirs", nargs=-1, type=click.Path())
@click.option("--out", type=click.Path(file_okay=False), default="comparison", show_default=True,
              help="Folder for compare.csv, compare.md and compare.png (created if missing).")
@click.option("--iw-samples", "-k", type=click.IntRange(1, 1000000), default=1000, show_default=True,
              help="K for the test NLL. A run's eval.json is reused only when its K, number of images, seed and "
                   "checkpoint match; otherwise the NLL is computed here and eval.json is left as it is.")
@click.option("--max-examples", type=click.IntRange(min=1), default=None,
              help="Use the first N test images for reconstructions and NLL.")
@click.option("--samples", "n_samples", type=click.IntRange(2, 100000), default=10000, show_default=True,
              help="Generated images per run for the Fréchet distance and label statistics.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the samples and importance samples.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="TFDS data folder.")
@click.option("--force", is_flag=True, help="Replace compare.* in --out.")
def compare(run_dirs, out, iw_samples, max_examples, n_samples, seed, data_dir, force):
    """Compare runs of one dataset on one table: NLL, −ELBO, reconstruction, active units, sample quality.

    \b
    Sample quality: fd_classifier, a Fréchet distance between 10,000 samples and the test
    images in the features of a small classifier trained once per dataset (cached in
    <run root>/.classifiers/; not FID), the classifier's mean label entropy and the
    share of classes the samples cover. Writes OUT/compare.csv, compare.md, compare.png.
    """
    from tfvae.rundir import read_config

    if not run_dirs:
        raise TfvaeError("compare needs at least one RUN_DIR")
    for run_dir in run_dirs:
        read_config(run_dir)
    _quiet_tensorflow()
    from tfvae.compare import compare_runs, format_text

    result = compare_runs(list(run_dirs), out, iw_samples=iw_samples, max_examples=max_examples,
                          n_samples=n_samples, seed=seed, force=force, data_dir=data_dir,
                          say=lambda m: click.echo(m, err=True))
    info = result["classifier"]
    click.echo(format_text(result["rows"]))
    click.echo(f"feature classifier: test accuracy {100 * info['test_accuracy']:.2f}% ({info['dataset']})")
    for f in result["files"]:
        click.echo(f"written: {f}")


if __name__ == "__main__":
    cli()
