"""Render the README's figure sections from the result files under ``bench/results/``.

    python bench/readme_tables.py            # rewrite the marked sections of README.md
    python bench/readme_tables.py --check    # exit 1 if README.md differs from its files

A section is the text between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->``;
each NAME has a renderer below that reads only committed result files (written by the
commands that measured them, see ``bench/_evidence.py``). ``tests/test_readme.py`` runs
the check, so a figure typed into the README by hand, or a result file changed without
the README, fails the tests. No TensorFlow is imported.
"""

from __future__ import annotations

import csv
import json
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
SECTION = re.compile(r"(<!-- results:(?P<name>[a-z0-9-]+) -->\n)(?P<body>.*?)(<!-- /results:(?P=name) -->)", re.S)


def _load(name):
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def _machine(record) -> str:
    p = record["provenance"]
    m = p["machine"]
    threads = m.get("matmul_peak_threads", "all")
    where = "all cores" if threads == "all" else f"{threads} thread{'s' if threads != 1 else ''}"
    return (f"{m['cpu_model']}, {m['logical_cores']} logical cores, float32 matmul peak "
            f"{m['matmul_peak_gflops']:,.0f} GFLOP/s ({where}); commit {p['git']['commit'][:7]}"
            f"{' (uncommitted changes)' if p['git']['dirty'] else ''}, {p['date'][:10]}")


def _missing(what: str, command: str) -> str:
    # ``what`` names the file this section waits for; the README does not name it, since it
    # is not committed yet.
    return (f"No committed measurement yet: `{command}` writes its result file under `bench/results/`, "
            f"and `python bench/readme_tables.py` puts its figures here.\n")


def render_default_run() -> str:
    record = _load("default_run.json")
    if record is None:
        return _missing("default_run.json", "TFDS_DATA_DIR=../shared/tensorflow_datasets python bench/default_run.py")
    f = record["figures"]
    t, e = f["training"], f["evaluation"]
    m, p = e["metrics"], e["protocol"]
    params = f["parameters"]
    trained = (f"trained at commit {f['train_commit'][:7]}" if f.get("train_commit") else
               "trained at a commit its config.json does not record (before train recorded it)")
    family = _run_model(RESULTS / "default")
    lines = [
        f"Run `{f['run']}` ({MODEL_NAMES.get(family, family or 'the model its config.json names')}; "
        f"`bench/results/default/`: its config.json, summary.json, metrics.csv, eval.json), "
        f"{trained}; machine: {_machine(record)}." + (f" {f['note']}" if f.get("note") else ""),
        "",
        "| | value | command |",
        "| --- | --- | --- |",
        f"| parameters | {params['total']:,} ({params['encoder']:,} encoder + {params['decoder']:,} decoder) | |",
        f"| training | {t['epochs']} epochs in {t['seconds'] / 60:.1f} min; {t['seconds_per_epoch']:.1f} s/epoch and "
        f"{t['train_images_per_second']:,.0f} training images/s (medians) | `{f['train_command']}` |",
        f"| best validation −ELBO | {t['best_val_neg_elbo']:.2f} nats | (same run, `metrics.csv`) |",
        f"| test −ELBO | {m['neg_elbo']:.2f} nats (reconstruction {m['reconstruction']:.2f} + KL {m['kl']:.2f}) "
        f"| `python cli.py evaluate RUN_DIR` |",
        f"| test NLL, K = {p['iw_samples']:,} | **{m['nll']:.2f} ± {m['nll_stderr']:.2f} nats** "
        f"({p['num_images']:,} test images; ± 1 standard error over images) | (same) |",
        f"| active units | {m['active_units']} of {m['latent_dim']} | (same) |",
        f"| evaluation time | {e['seconds']:.0f} s for {p['num_images']:,} images × {p['iw_samples']:,} samples | (same) |",
    ]
    return "\n".join(lines) + "\n"


def _render_preset_run(preset: str, stem: str, iw_samples: int = 5000) -> str:
    """A preset's training and evaluation from ``bench/results/STEM_run.json`` (written by
    ``bench/default_run.py --preset PRESET --out STEM --iw-samples K``); for a hierarchical
    VAE also the KL and active units of each latent group, and the validation curve
    (``loss.png``); when ``bench/results/STEM_k_gap.json`` exists (``bench/k_gap.py``), the
    NLL's drop from the evaluated K to a larger one on the first test images, and the figure
    it implies for the whole split, marked as an estimate."""
    record = _load(f"{stem}_run.json")
    if record is None:
        return _missing(f"{stem}_run.json", "TFDS_DATA_DIR=../shared/tensorflow_datasets python bench/default_run.py "
                        f"--preset {preset} --run-dir runs/{preset} --iw-samples {iw_samples} --out {stem}")
    f = record["figures"]
    t, e = f["training"], f["evaluation"]
    m, p = e["metrics"], e["protocol"]
    lines = [
        f"Machine: {_machine(record)}." + (f" {f['note']}" if f.get("note") else ""), "",
        f"| `{preset}` | value |", "| --- | --- |",
        f"| training command | `{f['train_command']}` |",
        f"| test NLL, K = {p['iw_samples']:,}, {p['num_images']:,} test images | **{m['nll']:.2f} ± "
        f"{m['nll_stderr']:.2f} nats** |",
        f"| test −ELBO | {m['neg_elbo']:.2f} nats (reconstruction {m['reconstruction']:.2f} + KL {m['kl']:.2f}) |",
        f"| active units | {m['active_units']} of {m['latent_dim']} |",
    ]
    if "kl_per_group" in m:
        lines += [f"| KL per group, top first | {', '.join(f'{v:.2f}' for v in m['kl_per_group'])} nats |",
                  f"| active units per group | {', '.join(map(str, m['active_units_per_group']))} of "
                  f"{', '.join(map(str, m['group_dims']))} |"]
    gap = _load(f"{stem}_k_gap.json")
    if gap is not None:
        g = gap["figures"]
        for q in g["pairs"]:
            lines.append(f"| NLL drop from K = {q['small_k']:,} to K = {q['large_k']:,}, first {g['images']:,} test "
                         f"images, nested samples | {q['mean_gap']:.2f} ± {q['gap_stderr']:.2f} nats per image "
                         f"(positive for {q['share_positive']:.0%} of them; K = {q['large_k']:,} took "
                         f"{g['per_k'][str(q['large_k'])]['seconds'] / 60:.0f} min) |")
        if "test_split" in g:
            w = g["test_split"]
            lines.append(f"| test NLL at K = {w['estimated_large_k']:,}, all {w['num_images']:,} test images "
                         f"(**an estimate**, not measured) | {w['estimated_nll']:.2f} ± {w['estimated_nll_stderr']:.2f}"
                         f" nats: {w['estimate']} |")
    lines += [f"| training | {t['epochs']} epochs in {t['seconds'] / 60:.0f} min |",
              f"| evaluation | {e['seconds'] / 60:.0f} min |"]
    if (RESULTS / stem / "loss.png").is_file():
        lines += ["", f"Training curve (validation −ELBO per epoch): `bench/results/{stem}/loss.png`; per epoch: "
                      f"`bench/results/{stem}/metrics.csv`."]
    return "\n".join(lines) + "\n"


# The presets whose runs ``bench/default_run.py --preset PRESET --out STEM`` measures.
PRESET_RUNS = {"mnist-best": "mnist_best", "mnist-hvae": "mnist_hvae", "mnist-hvae-maps": "mnist_hvae_maps",
               "mnist-vqvae": "mnist_vqvae"}


def render_mnist_vqvae() -> str:
    """The VQ-VAE's bound beside the default VAE's importance-weighted NLL (same test images,
    same binarization), from ``bench/results/mnist_vqvae_run.json`` and ``default_run.json``;
    the codebook's use from the run's last ``metrics.csv`` row; the samples' figures."""
    stem = PRESET_RUNS["mnist-vqvae"]
    record = _load(f"{stem}_run.json")
    if record is None:
        return _missing(f"{stem}_run.json", "TFDS_DATA_DIR=../shared/tensorflow_datasets python bench/default_run.py "
                        f"--preset mnist-vqvae --run-dir runs/mnist-vqvae --iw-samples 1 --out {stem}")
    f = record["figures"]
    t, e = f["training"], f["evaluation"]
    m, p = e["metrics"], e["protocol"]
    lines = [f"Machine: {_machine(record)}." + (f" {f['note']}" if f.get("note") else ""), "",
             "| model | −log p(x) on the test images (nats) | bits/dim | reconstruction | KL (nats) | training |",
             "| --- | --- | --- | --- | --- | --- |",
             f"| VQ-VAE `--preset mnist-vqvae` | ≤ **{m['neg_elbo']:.2f} ± {m['nll_stderr']:.2f}** (a bound: the "
             f"ELBO of a point-mass posterior) | {m['neg_elbo_bits_per_dim']:.4f} | {m['reconstruction']:.2f} | "
             f"{m['kl']:.2f} (−log p(z_q) under the learned prior) | {t['epochs']} epochs, "
             f"{t['seconds'] / 60:.0f} min; " + (f"the prior {t['artifacts_seconds'] / 60:.0f} min |"
                                                  if t.get("artifacts_seconds") is not None
                                                  else "the prior's time not recorded by this run |")]
    default = _load("default_run.json")
    if default is not None:
        d = default["figures"]["evaluation"]
        dm, dp = d["metrics"], d["protocol"]
        same = (dp["num_images"], dp["binarization"], dp["binarization_seed"]) == (
            p["num_images"], p["binarization"], p["binarization_seed"])
        # bits/dim = nats / (D ln 2), D the pixels of the same images (older files do not hold it)
        bits = dm.get("nll_bits_per_dim", dm["nll"] / (math.prod(p["image_shape"]) * math.log(2)))
        lines.append(f"| default model, {MODEL_NAMES.get(_run_model(RESULTS / 'default'), 'VAE')} (`default_run.json`) | ≈ {dm['nll']:.2f} ± {dm['nll_stderr']:.2f} (importance-"
                     f"weighted, K = {dp['iw_samples']:,}) | {bits:.4f} | {dm['reconstruction']:.2f} "
                     f"| {dm['kl']:.2f} | {default['figures']['training']['epochs']} epochs, "
                     f"{default['figures']['training']['seconds'] / 60:.0f} min |")
        if not same:
            lines.append("")
            lines.append("(The two rows' test protocols differ; compare with care.)")
        if default["provenance"]["machine"] != record["provenance"]["machine"]:
            lines += ["", f"The VAE row was measured on another machine ({_machine(default)}): compare its minutes "
                          "with that in mind."]
    lines += ["", f"Protocol: {p['num_images']:,} test images, {p['binarization']} binarization (seed "
                  f"{p['binarization_seed']}), {p['checkpoint']} checkpoint; {p['estimator']}."]
    curve = RESULTS / stem / "metrics.csv"
    if curve.is_file():
        import csv

        last = list(csv.DictReader(curve.open()))[-1]
        lines += ["", f"Codebook at the last epoch (validation): perplexity {float(last['val_perplexity']):.1f} of "
                      f"{record['figures'].get('codebook_size', 'K')} codes; share of codes in use (used at least "
                      f"once per batch on average) {float(last['codes_in_use']):.2f}. Per epoch: "
                      f"`bench/results/{stem}/metrics.csv`; the prior's curve: `bench/results/{stem}/prior_metrics.csv`."]
    for name, what in (("samples.png", "from the learned prior"), ("samples_uniform.png", "with every code uniform"),
                       ("reconstructions.png", "test images and their reconstructions")):
        if (RESULTS / stem / name).is_file():
            lines += ["", f"![{what}](bench/results/{stem}/{name})"]
    gen = _load("vqvae_generate.json")
    if gen is not None:
        g = gen["figures"]
        cells = "; ".join(f"{name} {r['image_ms']:.0f} ms ({r['prior_call_ms']:.2f} ms a prior call, "
                          f"{r['decoder_call_ms']:.2f} ms the decoder)" for name, r in g["runtimes"].items())
        lines += ["", f"`generate`, one image on one thread (`bench/results/vqvae_generate.json`: "
                      f"`python cli.py export {g['source_run']} --tflite --onnx --out {Path(g['export']).parent} "
                      f"--name {Path(g['export']).name}`, then `python bench/vqvae_generate.py {g['export']}`; "
                      f"{_machine(gen)}): {g['prior_calls_per_image']} "
                      f"prior calls and one decoder call, median of {g['calls']}: {cells}. The two runtimes drew "
                      f"{'the same' if g['same_codes'] else 'different'} codes for the same seed."]
    return "\n".join(lines) + "\n"


def _preset_rows() -> list:
    """Likelihood-table rows from the committed preset runs (``bench/results/STEM_run.json``;
    same protocol as ``bench/likelihood_table.py``), shown while that table's own result file
    is not committed."""
    rows = []
    for preset, stem in PRESET_RUNS.items():
        record = _load(f"{stem}_run.json")
        if record is None:
            continue
        f = record["figures"]
        e = f["evaluation"]
        rows.append({"preset": preset,
                     "label": f"tfvae `--preset {preset}`, {f['training']['epochs']} epochs (section below)",
                     "metrics": e["metrics"], "protocol": e["protocol"],
                     "training_minutes": f["training"]["seconds"] / 60, "file": f"{stem}_run.json",
                     "record": record})
    return rows


def render_mnist_best() -> str:
    return _render_preset_run("mnist-best", PRESET_RUNS["mnist-best"])


def render_mnist_hvae() -> str:
    return _render_preset_run("mnist-hvae", PRESET_RUNS["mnist-hvae"])


def render_mnist_hvae_maps() -> str:
    """The latent-map preset, evaluated with K = 1,000 on all test images (K = 5,000 there takes
    longer than a sitting on a 2-core CPU: ``eval_speed_maps.json``), with its measured K gap."""
    return _render_preset_run("mnist-hvae-maps", PRESET_RUNS["mnist-hvae-maps"], iw_samples=1000)


def render_likelihood() -> str:
    """The likelihood table: the rows of ``bench/results/likelihood_table.json`` (each with its
    machine), the committed preset runs whose preset it has not measured, the published figures,
    and the names of its rows not measured yet."""
    record = _load("likelihood_table.json")
    sys.path.insert(0, str(ROOT / "bench"))
    from likelihood_table import ROWS

    lines = ["| model | test NLL (nats) | −ELBO (nats) | active units | training minutes | protocol |",
             "|---|---|---|---|---|---|"]
    table = record["figures"]["rows"] if record is not None else []
    measured = {r["name"] for r in table}
    presets = [r for r in _preset_rows() if r["preset"] not in measured]
    for r in table + presets:
        m, p = r["metrics"], r["protocol"]
        lines.append(f"| {r['label']} | {m['nll']:.2f} ± {m['nll_stderr']:.2f} | {m['neg_elbo']:.2f} | "
                     f"{m['active_units']} of {m['latent_dim']} | {r['training_minutes']:.0f} | "
                     f"K = {p['iw_samples']:,}, {p['num_images']:,} test images |")
    for r in (record["figures"]["published"] if record else _published()):
        lines.append(f"| {r['label']} | {r['nll']} | | | | {r['protocol']} (published) |")
    sources = ([f"`bench/results/likelihood_table.json` (machine: {_machine(record)})"] if record else []) + \
        [f"`bench/results/{r['file']}` (machine: {_machine(r['record'])})" for r in presets]
    missing = [label for name, label, _ in ROWS if name not in measured
               and not any(r["preset"] == name for r in presets)]
    head = "tfvae's rows come from " + "; ".join(sources) + "." if sources else "No tfvae row is measured yet."
    if missing:
        head += (" Rows of `bench/likelihood_table.py` not measured yet (`--only NAME` measures one): "
                 + "; ".join(missing) + ".")
    folders = sorted({str(Path(f).parent) + "/" for r in table for f in r.get("figures", [])})
    tail = ("\nSamples, reconstructions and curves: " + ", ".join(f"`{f}`" for f in folders)
            + "; each row's validation −ELBO per epoch: `bench/results/likelihood_table.json`.\n") if folders else ""
    return head + "\n\n" + "\n".join(lines) + "\n" + tail


def _published():
    sys.path.insert(0, str(ROOT / "bench"))
    from likelihood_table import PUBLISHED

    return [{"label": label, "nll": nll, "protocol": protocol} for label, nll, protocol in PUBLISHED]


def breakdown_lines(bd: dict, peak: float) -> list:
    """train_bench's evaluate breakdown as text lines (printed by the bench, rendered here)."""
    out = [f"one evaluate call ({bd['images_per_call']} images x K = {bd['k']:,}), each part alone:"]
    for r in bd["rows"]:
        out.append(f"  {r['part']:<40} {1e3 * r['seconds']:8.1f} ms  {r['gflops']:6.0f} GFLOP/s = "
                   f"{100 * r['gflops'] / peak:3.0f}% of peak")
    return out


def render_speed() -> str:
    d = _load("train_bench.json")
    if d is None:
        return _missing("train_bench.json", "TFDS_DATA_DIR=../shared/tensorflow_datasets python bench/train_bench.py")
    if "figures" in d:
        header, d = f"Machine: {_machine(d)}.\n\n", d["figures"]
    else:
        header = ("From `bench/results/train_bench.json`, written by an earlier version of the benchmark that did not "
                  "yet record the machine beyond its matmul peak; its training-run memory figure was wrong (the "
                  "largest child's, not `cli.py train`'s) and is left out until re-measured.\n\n")
    rows = [k for k, v in d.items() if isinstance(v, dict) and "images_per_second" in v and k != "cli_train"]
    out = ["```", "== training throughput (batch 128 unless named); % of peak: 3 × forward FLOPs × images/s =="]
    for k in rows:
        share = f"  {100 * d[k]['peak_fraction']:4.1f}% of peak" if "peak_fraction" in d[k] else ""
        out.append(f"{k:<38} {d[k]['images_per_second']:>9,.0f} images/s{share}   peak RSS {d[k]['rss_mb']:>6,.0f} MB")
    ref = d["keras-io reference"]["images_per_second"]
    same = d.get("ratio_vs_keras_io", d["tfvae, keras-io architecture"]["images_per_second"] / ref)
    out.append(f"ratio tfvae / keras-io reference (same architecture): {same:.2f}x   (goal >= 1.5x)")
    torch_row = d.get("PyTorch peer (MLP 784-400-20)", {})
    if "images_per_second" in torch_row:
        vs_torch = d.get("ratio_vs_pytorch",
                         d["tfvae, PyTorch MLP"]["images_per_second"] / torch_row["images_per_second"])
        out.append(f"ratio tfvae / PyTorch (same MLP): {vs_torch:.2f}x   (goal >= 1.0x)")
    ev, peak = d["evaluate"], d["matmul_peak_gflops"]
    out += ["", f"== evaluate: importance-weighted NLL on 1,000 test images; decoder "
                f"{ev['decoder_flops'] / 1e6:.2f} MFLOP/sample; matmul peak {peak:,.0f} GFLOP/s =="]
    for r in ev["rows"]:
        out.append(f"K={r['k']:>5}: {r['seconds']:7.1f} s   {r['gflops']:6.0f} GFLOP/s = {100 * r['gflops'] / peak:3.0f}% "
                   f"of peak")
    if "breakdown" in ev:
        out += breakdown_lines(ev["breakdown"], peak)
    if "evaluate_peak_fraction" in d:
        out.append(f"evaluate: {100 * d['evaluate_peak_fraction']:.0f}% of peak (K >= 1,000)   (goal >= 70%)")
    mem = d.get("cli_train", {})
    if "figures" in (_load("train_bench.json") or {}) and "rss_mb" in mem:
        out += ["", f"python cli.py train --dataset mnist --epochs 1: peak RSS {mem['rss_mb']:,.0f} MB "
                    f"(that process's own ru_maxrss)"]
    out.append("```")
    return header + "\n".join(out) + "\n"


def render_family() -> str:
    path = RESULTS / "family" / "compare.csv"
    if not path.is_file():
        return _missing("family/compare.csv", "TFDS_DATA_DIR=../shared/tensorflow_datasets python bench/family_table.py")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))

    def num(v, digits=2):
        return "n/a" if v in ("", None) else f"{float(v):.{digits}f}"

    record = _load("family_table.json")
    head = (f"Machine: {_machine(record)}.\n\n" if record else
            "From `bench/results/family/compare.csv`, written by `compare` in an earlier run of the script, before "
            "result files recorded the machine and commit.\n\n")
    lines = ["| run | model | β | objective | z for samples | test NLL (nats) | K | −ELBO (nats) | recon. BCE (nats) "
             "| active units | fd_classifier | label entropy (nats) | train min |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['model']} | {num(r['beta'])} | {r['objective']} | {r['sampling']} | "
                     f"{num(r['nll'])} | {r['iw_samples'] or 'n/a'} | {num(r['neg_elbo'])} | {num(r['bce'])} | "
                     f"{r['active_units']} | {num(r['fd_classifier'])} | {num(r['label_entropy'])} | "
                     f"{num(r['train_minutes'])} |")
    return head + "\n".join(lines) + "\n"


def render_classify() -> str:
    d = _load("default/classify.json")
    if d is None:
        return _missing("default/classify.json", "python bench/default_run.py")
    counts = list(dict.fromkeys(r["labels"] for r in d["rows"]))
    lines = ["| features | classifier | " + " | ".join(f"{c} labels" for c in counts) + " |",
             "| --- | --- |" + " --- |" * len(counts)]
    groups = {}
    for r in d["rows"]:
        groups.setdefault((r["features"], r["classifier"]), {})[r["labels"]] = r
    for (feature, clf), by_count in groups.items():
        cells = []
        for c in counts:
            r = by_count[c]
            cells.append(f"{100 * r['accuracy_mean']:.1f}%" + (f" ± {100 * r['accuracy_std']:.1f}" if r["seeds"] > 1 else ""))
        lines.append(f"| {feature} | {clf} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


ANOMALY = [("ood-fashion_mnist", "Fashion-MNIST test"), ("ood-mnist-validation", "its own validation split"),
           ("corrupt-blank", "blank test images"), ("corrupt-noise", "test images with half the pixels replaced by noise"),
           ("corrupt-invert", "inverted test images")]


def render_anomaly() -> str:
    lines = ["| model trained on | scored against | −ELBO | NLL (K=100) | typicality of −ELBO |",
             "| --- | --- | --- | --- | --- |"]
    found = False
    for name, label in ANOMALY:
        d = _load(f"default/anomaly_{name}.json")
        if d is None:
            continue
        found = True
        s = d["scores"]

        def cell(key):
            return f"{s[key]['auroc']:.3f}" if key in s else ""
        lines.append(f"| MNIST | {label} | {cell('neg_elbo')} | {cell('nll')} | {cell('typicality_neg_elbo')} |")
    if not found:
        return _missing("default/anomaly_*.json", "python bench/default_run.py")
    return "\n".join(lines) + "\n"


def render_inpaint() -> str:
    lines = ["| missing pixels | completion MSE / pixel | completion BCE (nats/image) | mean image MSE | mean image BCE |",
             "| --- | --- | --- | --- | --- |"]
    found = False
    for name, label in (("random0.5", "random half"), ("bottom", "bottom half")):
        d = _load(f"default/inpaint_{name}.json")
        if d is None:
            continue
        found = True
        c, b = d["completion"], d["mean_image_baseline"]
        lines.append(f"| {label} | {c['mse_per_missing_pixel']:.3f} | {c['bce_nats_per_image']:.1f} | "
                     f"{b['mse_per_missing_pixel']:.3f} | {b['bce_nats_per_image']:.1f} |")
    if not found:
        return _missing("default/inpaint_*.json", "python bench/default_run.py")
    return "\n".join(lines) + "\n"


def render_export_bench() -> str:
    record = _load("export_bench.json")
    if record is None:
        return _missing("export_bench.json", "python bench/export_bench.py EXPORT_DIR --result export_bench")
    f = record["figures"]
    out = [f"Machine: {_machine(record)}; decoder {f['decoder_mflop_per_sample']:.2f} MFLOP per sample; one thread.",
           "", "```",
           f"{'runtime / variant':<26}{'size':>11}{'1-sample ms':>13}{'vs SM':>8}{'GFLOP/s':>9}{'% peak':>8}"
           f"{'batch-64 img/s':>16}{'vs SM':>8}"]
    ref = f["rows"][0]
    for r in f["rows"]:
        size = f"{r['bytes'] / 1e6:>9.2f}MB" if r["bytes"] else f"{'':>11}"
        tput = (f"{r['batch64_images_per_second']:>16.0f}{r['batch64_images_per_second'] / ref['batch64_images_per_second']:>8.2f}"
                if r["batch64_images_per_second"] else f"{'n/a (batch 1)':>16}{'':>8}")
        out.append(f"{r['runtime']:<26}{size}{r['latency_ms']:>13.3f}{r['latency_ms'] / ref['latency_ms']:>8.2f}"
                   f"{r['gflops']:>9.2f}{100 * r['peak_fraction']:>7.1f}%{tput}")
    out.append("```")
    a = f.get("litert_analysis")
    if a:
        out += ["", "Why LiteRT's batch-1 float32 decoder stays under half the peak (same run):", "", "```",
                "layer by layer (each layer converted alone, batch 1):"]
        for r in a["layers"]:
            out.append(f"  {r['layer']:<10} {r['kind']:<16} {r['ms']:7.3f} ms  {r['mflop']:5.2f} MFLOP  "
                       f"{r['weight_bytes'] / 1e6:5.2f} MB weights  {r['gflops']:6.1f} GFLOP/s")
        out.append(f"memory roofline: {a['weight_bytes'] / 1e6:.2f} MB of weights read once per image at "
                   f"{a['read_bandwidth_gb_s']:.1f} GB/s (one thread) -> at most {a['roofline_gflops']:.1f} GFLOP/s "
                   f"= {100 * a['roofline_peak_fraction']:.0f}% of the one-core peak")
        if "layers_ms_sum" in a:
            out.append(f"the layers alone add up to {a['layers_ms_sum']:.3f} ms")
        out.append("whole decoder by runtime configuration:")
        for c in a["configurations"]:
            out.append(f"  {c['configuration']:<42} " + (f"{c['ms']:7.3f} ms  {100 * c['peak_fraction']:4.1f}% of peak"
                                                         if "ms" in c else f"failed: {c['error'][:60]}"))
        out += [f"fastest: {a['fastest']}", "```"]
    return "\n".join(out) + "\n"


def _gaussian_bits(nats: float, image_shape) -> float:
    """Bits/dim of a Gaussian's NLL (nats per image) with today's conversion (no TensorFlow)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tfvae.likelihoods import Gaussian

    return Gaussian(0.1).bits_per_dim(nats, tuple(image_shape), "none")[0]


MODEL_NAMES = {"hvae": "the hierarchical VAE", "vae": "the one-layer VAE"}


def _run_model(folder, file: str = "config.json", *above: str) -> "str | None":
    """The model family in a run's ``config.json`` in ``folder`` (or in ``file`` there, under
    the keys ``above``, e.g. a model card's ``config``); None when there is none."""
    try:
        record = json.loads((Path(folder) / file).read_text())
        for key in above:
            record = record[key]
        return record["model"]["model"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def render_image_folders() -> str:
    record = _load("image_folders.json")
    if record is None:
        return _missing("image_folders.json", "TFDS_DATA_DIR=../shared/tensorflow_datasets python bench/image_folders.py")
    f = record["figures"]
    names = {"fashion_tfds": "Fashion-MNIST, `--dataset fashion_mnist` (TFDS)",
             "fashion_png": "Fashion-MNIST as PNG files, `--image-dir`",
             "colour_gaussian": "colour folder, `--likelihood gaussian` (σ = 0.1)",
             "colour_logistic": "colour folder, `--likelihood logistic`"}
    models = sorted({_run_model(RESULTS / "image_folders" / key) for key in f["runs"]} - {None})
    model = " and ".join(MODEL_NAMES.get(m, m) for m in models) or "the default model"
    out = [f"Machine: {_machine(record)}. Each run: {model} (the default when measured) and the default options "
           f"otherwise, {f['epochs']} epochs; "
           f"test NLL with K = {f['iw_samples']} importance samples; bits/dim as `eval.json` states it "
           f"(`bench/results/image_folders/`: each run's config, metrics, eval.json and figures).", "",
           "| run | image | test images | test NLL (nats) | −ELBO (nats) | bits/dim (NLL) | training |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for key, label in names.items():
        r = f["runs"].get(key)
        if r is None:
            continue
        m, p = r["metrics"], r["protocol"]
        shape = "×".join(str(v) for v in p["image_shape"])
        bits = f"{m['nll_bits_per_dim']:.3f}"
        if "ln 256" in p.get("bits_per_dim", ""):  # measured before the level width was corrected to 1/255
            bits = f"{_gaussian_bits(m['nll'], p['image_shape']):.3f}¹"
        out.append(f"| {label} | {shape}, {p['binarization']} | {p['num_images']:,} | {m['nll']:.2f} ± "
                   f"{m['nll_stderr']:.2f} | {m['neg_elbo']:.2f} | {bits} | "
                   f"{r['seconds'] / 60:.1f} min |")
    c = f.get("colour_folder", {})
    if c:
        out += ["", f"Colour folder: {c['train']:,} training and {c['test']:,} test files; {c['what']}. The Gaussian's "
                    "bits/dim adds D·ln 255 to a density (pixels are k/255, so each level's cell is 1/255 wide; no "
                    "dequantization noise); the logistic's is the probability of the 8-bit image."]
    if any("ln 256" in r["protocol"].get("bits_per_dim", "") for r in f["runs"].values()):
        out += ["", "¹ Converted here from the committed NLL in nats with D·ln 255 (`tfvae.likelihoods.Gaussian."
                    "bits_per_dim`); the run's `eval.json` used D·ln 256, 0.006 bits/dim more, before the correction."]
    return "\n".join(out) + "\n"


def render_vqvae_bits_per_dim() -> str:
    """The VQ-VAE's bound beside the VAE's importance-weighted NLL in bits/dim on the same
    data and test images (``image_folders_vqvae.json`` beside ``image_folders.json``), as the
    VQ-VAE paper compares them on CIFAR-10."""
    record = _load("image_folders_vqvae.json")
    if record is None:
        return _missing("image_folders_vqvae.json",
                        "TFDS_DATA_DIR=../shared/tensorflow_datasets python bench/image_folders.py --model vqvae")
    vae_record = _load("image_folders.json") or {"figures": {"runs": {}}}
    vae = vae_record["figures"]
    f = record["figures"]
    names = {"fashion_tfds": "Fashion-MNIST (TFDS)", "colour_logistic": "colour folder, `--likelihood logistic`"}
    out = [f"Machine: {_machine(record)}. Each run: `--model vqvae` with its defaults otherwise, {f['epochs']} "
           "epochs, beside the VAE run on the same data in the table of \"Image folders\" "
           f"({vae.get('epochs', '?')} epochs); the same test images and protocol "
           "(`bench/results/image_folders_vqvae/`: each run's config, metrics, prior curve and eval.json).", "",
           "| data | image | test images | VAE: test NLL, bits/dim (K) | VQ-VAE: bound, bits/dim | VQ-VAE: reconstruction "
           "(nats) and −log p(z_q) (nats) | training (VAE / VQ-VAE) |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for key, label in names.items():
        r, v = f["runs"].get(key), vae["runs"].get(key)
        if r is None:
            continue
        m, p = r["metrics"], r["protocol"]
        if v is not None and v["protocol"]["num_images"] == p["num_images"]:
            vae_cell = f"{v['metrics']['nll_bits_per_dim']:.3f} ({v['protocol']['iw_samples']})"
            vae_time = f"{v['seconds'] / 60:.1f}"
        else:
            vae_cell, vae_time = "not measured on these images", "–"
        shape = "×".join(str(d) for d in p["image_shape"])
        out.append(f"| {label} | {shape}, {p['binarization']} | {p['num_images']:,} | {vae_cell} | ≤ **{m['neg_elbo_bits_per_dim']:.3f}** | "
                   f"{m['reconstruction']:.1f} and {m['kl']:.1f} | {vae_time} / {r['seconds'] / 60:.1f} min |")
    if "provenance" in vae_record and vae_record["provenance"]["machine"] != record["provenance"]["machine"]:
        out += ["", f"The VAE runs were measured on another machine ({_machine(vae_record)}): compare their minutes "
                    "with that in mind."]
    out += ["", "The VQ-VAE's figure is an upper bound on −log p(x) (a point-mass posterior's ELBO under the "
                "learned prior); the VAE's is the importance-weighted estimate, itself an upper bound that tightens "
                "with K."]
    return "\n".join(out) + "\n"


def render_input_bench() -> str:
    record = _load("input_bench.json")
    if record is None:
        return _missing("input_bench.json", "TFDS_DATA_DIR=../shared/tensorflow_datasets python bench/input_bench.py")
    f = record["figures"]
    rows = [("folder, 6,000 PNG files", f["folder_6000"]), ("folder, 60,000 PNG files", f["folder_60000"]),
            ("in memory, 60,000 images", f["memory_60000"])]
    out = [f"Machine: {_machine(record)}. One epoch of `train_pipeline` (batch {f['batch']}, dynamic "
           "binarization, noise), each reader in a fresh process; the scan decodes every file once "
           "before training.", "",
           "| reader | images/s | scan (s) | peak RSS after TensorFlow's start-up (MB) |", "| --- | --- | --- | --- |"]
    for label, r in rows:
        out.append(f"| {label} | {r['images_per_second']:,.0f} | {r['scan_seconds']:.1f} | {r['peak_rss_mb']:,.0f} |")
    train = f["train_default_model"]["images_per_second"]
    g = f["goals"]
    out += ["", f"The 60,000-file folder costs {f['extra_rss_60000_vs_6000_files_mb']:,.0f} MB more than the "
                f"6,000-file one (goal: under {g['extra_rss_mb_below']} MB). The folder reader delivers "
                f"{f['folder_over_memory_rate']:.2f}× the in-memory reader's rate and "
                f"{f['folder_over_training_rate']:.1f}× what the one-layer VAE (`--model vae`) trains on this machine "
                f"({train:,.0f} images/s; goal: above {g['folder_over_training_rate_above']}×, the reader is not the "
                "bottleneck)."]
    return "\n".join(out) + "\n"


def render_multiworker() -> str:
    record = _load("multiworker_bench.json")
    if record is None:
        return _missing("multiworker_bench.json",
                        "TFDS_DATA_DIR=../shared/tensorflow_datasets python bench/multiworker_bench.py")
    f = record["figures"]
    one, two = f["workers"]["1"], f["workers"]["2"]
    out = [f"Machine: {_machine(record)}. Default model, global batch {f['batch']}, {f['images']:,} MNIST images, "
           f"{f['epochs']} epochs; training images/s of the chief (median of the epochs after the first).", "",
           "| workers | training images/s | step (s) |", "| --- | --- | --- |",
           f"| 1 | {one['train_images_per_second']:,.0f} | {f['one_worker_step_seconds']:.3f} |",
           f"| 2 (processes on 127.0.0.1) | {two['train_images_per_second']:,.0f} | {f['two_worker_step_seconds']:.3f} |",
           "",
           f"Two workers run at {f['speedup_two_over_one']:.2f}× one worker's rate. Each step all-reduces "
           f"{f['gradient_floats']:,} gradient values: {1000 * f['allreduce_seconds_per_step']:.1f} ms per step "
           f"measured alone, {100 * f['allreduce_share_of_two_worker_step']:.0f}% of a two-worker step. On "
           f"{f['cores']} cores the two processes also share the CPUs each had alone, so half a batch per worker "
           "does not halve the step time; on separate machines (or GPUs) the compute halves and the all-reduce "
           "is what remains to pay."]
    return "\n".join(out) + "\n"


def render_pretrained() -> str:
    record = _load("pretrained_mnist.json")
    if record is None:
        return _missing("pretrained_mnist.json", "TFDS_DATA_DIR=../shared/tensorflow_datasets python bench/pretrained_mnist.py")
    f = record["figures"]
    t, p = f["test"], f["test"]["protocol"]
    d = f["max_abs_difference_to_float32_savedmodel"]
    sizes = f["files"]
    family = _run_model(ROOT / f["export"] / "tflite" / "1", "model_card.json", "config")
    model = f"{MODEL_NAMES.get(family, family)}, " if family else ""
    out = [f"Made on: {_machine(record)}. The default recipe when made ({model}`{f['train_command']}`); test NLL "
           f"**{t['nll']:.2f} ± {t['nll_stderr']:.2f} nats** (K = {p['iw_samples']:,} importance samples, all "
           f"{p['num_images']:,} test images, {p['checkpoint']} checkpoint), −ELBO {t['neg_elbo']:.2f} nats, "
           f"{t['active_units']} active units; the model card holds the full protocol.", "",
           "| shipped file | for | bytes | max / mean abs. pixel difference to the float32 SavedModel (256 prior draws) |",
           "| --- | --- | --- | --- |",
           f"| `decoder_b1.tflite` (float16 weights) | the browser demo | {sizes['tflite/1/decoder_b1.tflite']:,} | "
           f"{d['decoder_b1.tflite']['max']:.4f} / {d['decoder_b1.tflite']['mean']:.6f} |",
           f"| `decoder_int8.tflite` (full integer, float32 in and out) | devices; `generate`'s default | "
           f"{sizes['tflite/1/decoder_int8.tflite']:,} | "
           f"{d['decoder_int8.tflite']['max']:.4f} / {d['decoder_int8.tflite']['mean']:.6f} |",
           f"| `samples.png` | the grid above | {sizes['tflite/1/samples.png']:,} | |", "",
           f"In all {f['total_bytes']:,} bytes with the model card. `{f['first_picture_command']}` took "
           f"{f['first_picture_seconds']:.1f} s in a fresh process (time to the first picture)."]
    return "\n".join(out) + "\n"


def render_time_to_quality() -> str:
    record = _load("time_to_quality.json")
    if record is None:
        return _missing("time_to_quality.json",
                        "TFDS_DATA_DIR=../shared/tensorflow_datasets python bench/time_to_quality.py")
    f = record["figures"]
    target = f["target_nats"]
    out = [f"Machine: {_machine(record)}.", "",
           "| recipe | command | model | epochs trained | seconds per epoch | test NLL (K = 1,000) | epochs | minutes |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in ("previous", "new"):
        r = f["recipes"][name]
        summary, last = r["train_summary"], r["snapshots"][-1]
        spe = r.get("train_config", {}).get("steps_per_execution", 1)
        if spe != 1 and "--steps-per-execution" not in r["command"]:  # what it ran, whatever today's default
            r = {**r, "command": f"{r['command']} --steps-per-execution {spe}"}
        trained = (f"{summary['stopped_after_epoch']} of {summary['of_epochs']} (stopped)"
                   if "stopped_after_epoch" in summary else f"{r['train_config']['epochs']}")
        per_epoch = summary.get("seconds_per_epoch")
        per_epoch = f"{per_epoch:.1f}" if per_epoch else ""
        family = r.get("model", "vae")  # records without the field were made when the default was the VAE
        model = MODEL_NAMES.get(family, family).removeprefix("the ")
        full = [p for p in r["evaluated"] if p["iw_samples"] == 1000 and p.get("num_images") == 10000]
        if r["reached"]:
            point = next(p for p in full if p["epoch"] == r["epochs_to_target"])
            bound = "at most " if r.get("time_is_upper_bound") else ""
            out.append(f"| {name} default | `{r['command']}` | {model} | {trained} | {per_epoch} | {point['nll']:.2f} ± "
                       f"{point['nll_stderr']:.2f} at epoch {point['epoch']} | {bound}{r['epochs_to_target']} | "
                       f"{bound}{r['minutes_to_target']:.1f} |")
        else:
            point = next((p for p in full if p["epoch"] == last["epoch"]), None)
            shown = f"{point['nll']:.2f} ± {point['nll_stderr']:.2f} at epoch {point['epoch']}" if point else ""
            out.append(f"| {name} default | `{r['command']}` | {model} | {trained} | {per_epoch} | {shown}: not "
                       f"at {target} | more than {last['epoch']} | more than {last['seconds'] / 60:.1f} |")
    if "time_to_quality_ratio" in f:
        bound = "at most " if f["recipes"]["new"].get("time_is_upper_bound") else ""
        out += ["", f"Time to {target} nats, new / previous: **{bound}{f['time_to_quality_ratio']:.2f}×** (goal ≤ 0.5×)."]
    elif "time_to_quality_ratio_below" in f:
        out += ["", f"Time to {target} nats, new / previous: **below {f['time_to_quality_ratio_below']:.2f}×** "
                    f"(goal ≤ 0.5×): the previous default was stopped before it reached the target, so its time "
                    f"to quality is longer than the time shown."]
    return "\n".join(out) + "\n"


def render_eval_speed(name: str = "eval_speed.json", goal: bool = True) -> str:
    """An ``bench/eval_speed.py`` result at K = 5,000: this tree's seconds against a reference
    commit's (issue 28's goal line with ``goal``), and, where recorded, the minutes the whole
    test split takes at each code's rate."""
    record = _load(name)
    if record is None:
        result = name.removesuffix(".json")
        return _missing(name, "TFDS_DATA_DIR=../shared/tensorflow_datasets python bench/eval_speed.py "
                              f"--run RUN_DIR --images 100 --iw-samples 5000"
                              + ("" if result == "eval_speed" else f" --result {result}"))
    f = record["figures"]
    ref = f["reference_commit"]
    split = all("test_split_minutes" in r for r in f["runs"].values())
    out = [f"Machine: {_machine(record)}. `{record['provenance']['command']}`: the first {f['images']:,} test "
           f"images, K = {f['iw_samples']:,}, sampling seed {f['sampling_seed']}, the fastest of "
           f"{len(next(iter(f['runs'].values()))['seconds_each'])} alternated repeats of each code.", "",
           f"| run | model | reference {ref} (s) | this tree (s) | speed-up | largest per-image abs. ΔNLL "
           f"(nats) | the same between two reference runs |" + (" whole test split at this tree's rate |" if split
                                                                 else ""),
           "| --- | --- | --- | --- | --- | --- | --- |" + (" --- |" if split else "")]
    for run, r in f["runs"].items():
        out.append(f"| `{run}` | {MODEL_NAMES.get(r['model'], r['model']).removeprefix('the ')}, "
                   f"{r['trained_epochs']} epochs | {r['reference_seconds']:.1f} | {r['seconds']:.1f} | "
                   f"{r['speedup']:.2f}× | {r['max_abs_nll_difference']:.1e} | "
                   f"{r['max_abs_nll_difference_between_reference_runs']:.1e} |"
                   + (f" {r['test_images']:,} images, {r['test_split_minutes']:.0f} min |" if split else ""))
    if goal:
        out += ["", "Goal: at most ⅓ of the reference's time (a speed-up of 3×), with the same per-image numbers."]
    return "\n".join(out) + "\n"


def render_gpu() -> str:
    record = _load("gpu_bench.json")
    if record is None:
        return _missing("gpu_bench.json", "TFDS_DATA_DIR=../shared/tensorflow_datasets python bench/gpu_bench.py")
    f = record["figures"]
    out = [f"GPU: {', '.join(f['gpus'])}; {_machine(record)}.", "", "```"]
    for r in f["rows"]:
        util = r["gpu_utilisation_percent"]
        out.append(f"{r['model']:<11} {r['precision']:<14} {'XLA' if r['jit'] else 'no XLA':<7} "
                   f"{r['images_per_second']:>10,.0f} images/s   GPU busy {'?' if util is None else f'{util:.0f}%'}")
    for model, p in f["parity"].items():
        out.append(f"{model:<11} float32 loss, GPU vs CPU on one batch: relative difference {p['relative_difference']:.1e}")
    out.append("```")
    return "\n".join(out) + "\n"


def render_disentanglement() -> str:
    record = _load("disentanglement_table.json")
    if record is None:
        return _missing("disentanglement_table.json", "python bench/disentanglement_table.py")
    from dataclasses import asdict

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tfvae.disentanglement import Protocol  # numpy only

    reference = {k: v for k, v in asdict(Protocol()).items() if k != "seed"}
    used = [json.loads((ROOT / r["result"]).read_text())["protocol"] for r in record["figures"]["rows"]]
    off = sorted({k for p in used for k, v in reference.items() if p.get(k) != v})
    if off or record["provenance"].get("git", {}).get("dirty"):
        p = used[0] if used else {}
        why = [f"{k} {p.get(k, 'not recorded')} (reference {reference[k]})" for k in off]
        if record["provenance"].get("git", {}).get("dirty"):
            why.append("made from a tree with uncommitted changes")
        return (f"No table: the committed one (`bench/results/disentanglement_table.json`, "
                f"{record['provenance'].get('date', '')[:10]}) is withdrawn because it differs from the reference "
                f"protocol of disentanglement_lib's study: {'; '.join(why)}. Re-make it from a clean commit with "
                f"`python bench/disentanglement_table.py`.\n")
    votes = reference["votes"]
    lines = [f"Machine: {_machine(record)}. Networks: `{record['figures']['networks']}`. Protocol (disentanglement_lib's "
             f"study): MIG on {reference['points']:,} points in {reference['bins']} bins; DCI trained on "
             f"{reference['points']:,} points, tested on {reference['points'] // 2:,}; FactorVAE and β-VAE scores from "
             f"{votes:,} training and {votes // 2:,} evaluation votes of {reference['batch_size']} images, dimensions "
             f"with standard deviation under {reference['prune_std']} left out of the FactorVAE score.", "",
             "| run | MIG | DCI disentanglement | DCI completeness | DCI informativeness | FactorVAE score "
             "| β-VAE score | reconstruction (nats/image) | total correlation (nats) "
             "| epochs × images (steps of 64) | train min |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in record["figures"]["rows"]:
        tc = json.loads((ROOT / r["result"]).read_text())["aggregate_posterior"]["tc"]
        lines.append(f"| {r['run']} | {r['mig']:.3f} | {r['dci_disentanglement']:.3f} | {r['dci_completeness']:.3f} | "
                     f"{r['dci_informativeness']:.3f} | {r['factor_vae_score']:.3f} | {r['beta_vae_score']:.3f} | "
                     f"{r['reconstruction']:.1f} | {tc:.2f} | {r['epochs']} × {r['train_images']:,} ({r['steps']:,}) | "
                     f"{r['train_minutes']:.0f} |")
    return "\n".join(lines) + "\n"


def render_hvae_levers() -> str:
    """Issue 29's table: each lever added to ``--preset mnist-hvae`` at the same epochs."""
    record = _load("hvae_levers.json")
    if record is None:
        return _missing("hvae_levers.json", "TFDS_DATA_DIR=../shared/tensorflow_datasets python bench/hvae_levers.py")
    rows = record["figures"]["rows"]
    machines = sorted({(r["matmul_peak_gflops"], r["measured"][:10]) for r in rows})
    lines = [f"Machine: {_machine(record)}" + (f"; rows measured on {len(machines)} occasions (peaks "
                                                 f"{', '.join(f'{p:,.0f}' for p, _ in machines)} GFLOP/s)"
                                                 if len(machines) > 1 else "") + ".", "",
             "| lever | test NLL (nats) | −ELBO (nats) | best validation −ELBO | KL per group, top first (nats) "
             "| active units | decoder MFLOP per sample | epochs, training minutes | protocol |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        t, p = r["test"], r["protocol"]
        kl = ", ".join(f"{v:.1f}" for v in t.get("kl_per_group", []))
        lines.append(f"| {r['label']} | {t['nll']:.2f} ± {t['nll_stderr']:.2f} | {t['neg_elbo']:.2f} | "
                     f"{r['best_val_neg_elbo']:.2f} | {kl} | {t['active_units']} of {r['latent_dim']} | "
                     f"{r['decoder_mflop_per_sample']:.1f} | {r['epochs']}, {r['training_minutes']:.0f} | "
                     f"K = {p['iw_samples']:,}, first {p['num_images']:,} test images |")
    from hvae_levers import ROWS  # bench/ is on sys.path when a script here runs

    measured = {r["name"] for r in rows}
    missing = [label for name, label, _ in ROWS if name not in measured]
    if missing:
        lines += ["", "Not measured yet: " + "; ".join(missing) + " (`--only NAME` measures a row)."]
    lines += ["", "Samples, reconstructions and curves: "
                  + ", ".join(f"`bench/results/hvae_levers/{r['name']}/`" for r in rows)
                  + "; each row's validation −ELBO per epoch: `bench/results/hvae_levers.json`."]
    return "\n".join(lines) + "\n"


RENDERERS = {"hvae-levers": render_hvae_levers, "pretrained": render_pretrained, "time-to-quality": render_time_to_quality, "gpu": render_gpu, "eval-speed": render_eval_speed,
             "eval-speed-maps": lambda: render_eval_speed("eval_speed_maps.json", goal=False), "default-run": render_default_run, "mnist-best": render_mnist_best, "mnist-hvae": render_mnist_hvae, "mnist-hvae-maps": render_mnist_hvae_maps, "mnist-vqvae": render_mnist_vqvae,
             "vqvae-bits-per-dim": render_vqvae_bits_per_dim, "likelihood": render_likelihood, "disentanglement": render_disentanglement,
             "speed": render_speed, "family": render_family, "classify": render_classify, "anomaly": render_anomaly,
             "inpaint": render_inpaint, "export-bench": render_export_bench,
             "image-folders": render_image_folders, "input-bench": render_input_bench, "multiworker": render_multiworker}


def render(text: str) -> str:
    """``text`` with every marked section replaced by its renderer's output.

    Raises:
        KeyError: a section names no renderer.
    """
    return SECTION.sub(lambda m: m.group(1) + RENDERERS[m.group("name")]() + m.group(4), text)


def sections(text: str) -> list:
    return [m.group("name") for m in SECTION.finditer(text)]


def main(argv=None) -> int:
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    text = README.read_text()
    new = render(text)
    if check:
        if new != text:
            print("README.md differs from bench/results (run: python bench/readme_tables.py)")
            return 1
        print(f"README.md matches bench/results ({len(sections(text))} sections)")
        return 0
    README.write_text(new)
    print(f"README.md: {len(sections(text))} sections rendered from bench/results")
    return 0


if __name__ == "__main__":
    sys.exit(main())
