"""Several machines: ``tf.distribute.MultiWorkerMirroredStrategy`` with a custom loop.

Keras 3's ``fit`` cannot train under ``MultiWorkerMirroredStrategy`` with more than one
worker (its steps receive ``PerReplica`` values it cannot convert: keras-team/keras#20585),
so :func:`fit` here is a plain loop of ``strategy.run`` steps. It shares everything else
with the single-machine path:

* the step is the model's own :meth:`tfvae.models.VAE.apply_step` (the one ``fit``'s
  ``train_step`` calls): gradients are summed over replicas by Keras's optimizer, each
  replica's loss weighted by its share of the global batch (``replica_share``);
* the data are ``train_pipeline`` / ``heldout_pipeline``, whose global batches are split
  over the replicas (:func:`distribute`): every global batch holds exactly the images a
  single machine's batch holds, each image with its row of the batch's draws (keyed by the
  batch's position, so a worker's rows are the ones one machine would draw);
* the run directory is written by the same Keras callbacks (``CSVLogger``,
  ``BackupAndRestore``, checkpoints, timer, NaN stop, graceful Ctrl-C), driven here
  through ``keras.callbacks.CallbackList`` on the chief only; the other workers write
  nothing.

A restart after a worker died resumes from the chief's backup: the chief loads it and
:func:`broadcast_from_chief` copies every model and optimizer variable (and the epoch
to start from) to the other workers, so only the chief needs to read the run directory's
weights. The ``TF_CONFIG`` of each worker names the cluster and the worker's own index
(https://www.tensorflow.org/guide/distributed_training#setting_up_the_tf_config_environment_variable).
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np

from ..errors import TfvaeError

_STRATEGY = None


def cluster_from_env() -> dict:
    """``TF_CONFIG`` parsed and checked: ``{"workers": N, "task_type": ..., "task_index": i}``.

    Raises:
        TfvaeError: TF_CONFIG not JSON, without ``cluster.worker`` addresses (a list of
            ``host:port`` strings), a ``cluster.chief`` that is not such a list, or a ``task``
            that is not an object naming one of the workers.
    """
    text = os.environ.get("TF_CONFIG")
    if not text:
        return {"workers": 1, "task_type": "worker", "task_index": 0}
    try:
        config = json.loads(text)
    except ValueError:
        raise TfvaeError("TF_CONFIG is not valid JSON (expected {\"cluster\": {\"worker\": [\"host:port\", ...]}, "
                         "\"task\": {\"type\": \"worker\", \"index\": i}})") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    workers = cluster.get("worker") if isinstance(cluster, dict) else None
    if not isinstance(workers, list) or not workers or not all(isinstance(w, str) and ":" in w for w in workers):
        raise TfvaeError("TF_CONFIG: cluster.worker must be a list of \"host:port\" addresses")
    chiefs = cluster.get("chief", [])
    if not isinstance(chiefs, list) or not all(isinstance(w, str) and ":" in w for w in chiefs):
        raise TfvaeError("TF_CONFIG: cluster.chief must be a list of \"host:port\" addresses")
    task = config.get("task", {})
    if not isinstance(task, dict):
        raise TfvaeError(f"TF_CONFIG: task must be an object {{\"type\": \"worker\", \"index\": i}}, got "
                         f"{json.dumps(task)[:80]}")
    kind, index = task.get("type"), task.get("index")
    size = {"worker": len(workers), "chief": len(chiefs) if isinstance(chiefs, list) else 0}
    if kind not in size or isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size[kind]:
        raise TfvaeError(f"TF_CONFIG: task {task!r} is not one of the cluster's workers "
                         f"(type 'worker', index 0 ... {len(workers) - 1})")
    return {"workers": len(workers) + size["chief"], "task_type": kind, "task_index": index,
            "addresses": list(chiefs) + list(workers), "own": (chiefs if kind == "chief" else workers)[index]}


WORKER_TIMEOUT = 300.0  # seconds a worker waits for its peers (train/evaluate --worker-timeout)


def check_own_port(cluster: dict) -> None:
    """Refuse an address of this worker's that another process already listens on.

    Raises:
        TfvaeError: names the address and says it is in use.
    """
    import socket

    host, _, port = cluster["own"].rpartition(":")
    if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise TfvaeError(f"TF_CONFIG: this worker's address {cluster['own']!r} has no port in 1..65535")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC: a port in TIME_WAIT is free
        try:
            sock.bind((host.strip("[]") or "127.0.0.1", int(port)))
        except OSError as exc:
            raise TfvaeError(f"TF_CONFIG: this worker's address {cluster['own']} is busy: another process listens "
                             f"on port {port} ({exc.strerror}); pick a free port") from None


def fingerprint_fields(cfg, data) -> dict:
    """What every worker of a run must agree on: the data, model and training options
    (paths left out: each machine may keep the data elsewhere) and facts of the data it
    loaded (split sizes, image shape, a hash of the first training images)."""
    import dataclasses
    import hashlib

    out = {}
    for section in ("data", "model", "train"):
        for key, value in dataclasses.asdict(getattr(cfg, section)).items():
            if key not in ("data_dir", "idx_dir", "image_dir"):
                out[f"{section}.{key}"] = value
    first = np.asarray(data.train[:16])
    out.update({"data: training images": len(data.train), "data: validation images": len(data.validation),
                "data: image shape": list(data.image_shape),
                "data: the first training images": hashlib.sha256(first.tobytes()).hexdigest()})
    return out


def check_workers_agree(strategy, cfg, data) -> None:
    """Every worker hashes each field of :func:`fingerprint_fields` to a 20-bit integer h;
    one all-reduce sums h and h² over the workers, and a field whose sum of squares is not
    n·mean² differs between workers (every worker sees the same sums, so all stop together).

    Raises:
        TfvaeError: names the first option (or data fact) that differs between workers.
    """
    import hashlib

    fields = fingerprint_fields(cfg, data)
    names = sorted(fields)
    h = np.asarray([int(hashlib.sha256(json.dumps(fields[k], sort_keys=True, default=str).encode()).hexdigest()[:5], 16)
                    for k in names], np.float64)
    n = cluster_from_env()["workers"]
    total = sum_over_workers(strategy, np.concatenate([h, h * h]))
    sums, squares = total[:len(names)], total[len(names):]
    differ = [k for k, s, q in zip(names, sums, squares) if abs(q * n - s * s) > 0.5]
    if differ:
        key = differ[0]
        option = "--" + key.split(".", 1)[1].replace("_", "-") if not key.startswith("data:") else key
        raise TfvaeError(f"--strategy multiworker: the workers disagree on {option} (this worker: {fields[key]!r}"
                         f"{f'; {len(differ) - 1} more field(s) differ' if len(differ) > 1 else ''}); start every "
                         f"worker with the same options and data")


def local_tf_configs(n: int) -> list:
    """``TF_CONFIG`` JSON strings for workers 0 ... n-1 of a cluster on 127.0.0.1 (free
    ports picked by binding port 0), for tests and benchmarks on one machine."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        addresses = [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]
    finally:
        for s in socks:
            s.close()
    return [json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}}) for i in range(n)]


def multiworker_strategy():
    """The process's ``MultiWorkerMirroredStrategy`` (created once, from ``TF_CONFIG``).

    It must be created before TensorFlow runs its first operation (it configures the
    collective ops); ``cli.py`` does so for ``--strategy multiworker``.

    Before it starts, this worker's own address must be free (:func:`check_own_port`);
    its start (a barrier over all workers) waits for the others at most
    :data:`WORKER_TIMEOUT` seconds, saying on stderr what it waits for.

    Raises:
        TfvaeError: a bad ``TF_CONFIG``, a busy address, peers that never came, or
            TensorFlow already initialised.
    """
    global _STRATEGY
    if _STRATEGY is None:
        cluster = cluster_from_env()
        if cluster["workers"] > 1:
            check_own_port(cluster)
        import subprocess
        import sys

        import tensorflow as tf

        others = [a for a in cluster["addresses"] if a != cluster["own"]]
        stderr = STDERR_FD if STDERR_FD is not None else sys.stderr.fileno()
        watchdog = None
        if others:
            os.write(stderr, (f"waiting for {len(others)} other worker(s) ({', '.join(others[:4])}"
                              f"{', ...' if len(others) > 4 else ''}), at most {WORKER_TIMEOUT:g} s "
                              f"(--worker-timeout)\n").encode())
            # The strategy's start waits for every worker, without bound, inside TensorFlow's C++ and
            # holding Python's lock (no thread or signal handler of this process runs meanwhile): a
            # watchdog process ends this one with one line after WORKER_TIMEOUT. Nothing has been
            # written yet (the run folder is made after the workers agree, check_workers_agree).
            message = (f"error: --strategy multiworker: {len(others)} other worker(s) ({', '.join(others[:4])}) "
                       f"did not come within --worker-timeout {WORKER_TIMEOUT:g} s; start the same command on each "
                       f"of them\n")
            watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(WORKER_TIMEOUT),
                                         message], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            _STRATEGY = tf.distribute.MultiWorkerMirroredStrategy()
        except (RuntimeError, ValueError) as exc:
            raise TfvaeError(f"--strategy multiworker: could not start ({' '.join(str(exc).split())[:200]})") from None
        finally:
            if watchdog is not None:
                watchdog.stdin.close()  # the watchdog sees end-of-file and exits
                watchdog.wait(timeout=30)
    return _STRATEGY


STDERR_FD = None  # a copy of the terminal's stderr, kept before TensorFlow's start silences fd 2 (keep_stderr)


def keep_stderr() -> None:
    """Keep a copy of file descriptor 2 for the waiting line and the watchdog's error,
    which are written while TensorFlow's start-up has fd 2 pointed at /dev/null."""
    global STDERR_FD
    if STDERR_FD is None:
        STDERR_FD = os.dup(2)


_WATCHDOG = """
import os, select, signal, sys
pid, timeout, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
ready, _, _ = select.select([sys.stdin], [], [], timeout)
if not ready:
    sys.stderr.write(message)
    sys.stderr.flush()
    os.kill(pid, signal.SIGKILL)
"""


def is_chief(strategy) -> bool:
    """True for the worker that writes files: the ``chief`` task, else worker 0."""
    return _worker_rank(strategy) == 0


def refuse_unsupported(jit: bool, steps_per_execution: int) -> None:
    """The multi-worker loop runs one step per call, without XLA.

    Raises:
        TfvaeError: ``jit`` set or ``steps_per_execution`` given and other than 1.
    """
    if jit or steps_per_execution not in (None, 1):
        raise TfvaeError("--strategy multiworker runs its own loop, without --jit or --steps-per-execution")


def sum_over_workers(strategy, values) -> np.ndarray:
    """The element-wise sum over the workers of a float64 array that each worker holds
    (one all-reduce; each worker's replicas send its copy once between them)."""
    import tensorflow as tf

    values = np.asarray(values, np.float64)
    per_replica = strategy.experimental_distribute_values_from_function(lambda ctx: tf.constant(values))
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None).numpy()
    return total / max(1, strategy.num_replicas_in_sync // cluster_from_env()["workers"])


def distribute(strategy, make_global_batches):
    """A distributed dataset whose global batches are split over the replicas.

    Args:
        make_global_batches: ``f(split)`` -> ``tf.data.Dataset`` of global batches, where
            ``split(ds)`` turns a dataset of global batches (any nested structure, leading
            axis = images) into this worker's per-replica batches. The builder applies it
            where it is cheapest (the training pipeline splits image *indices* before it
            decodes, so each worker reads only its own files).

    Replica r of R receives images [⌊r·b/R⌋, ⌊(r+1)·b/R⌋) of each global batch of b
    images, so the union over replicas is the global batch, in order.
    """
    import tensorflow as tf

    def fn(ctx):
        here = ctx.num_replicas_in_sync // ctx.num_input_pipelines
        first, total = ctx.input_pipeline_id * here, ctx.num_replicas_in_sync

        def split(ds):
            def parts(*batch):
                b = tf.shape(tf.nest.flatten(batch)[0], out_type=tf.int64)[0]
                cuts = (tf.range(first, first + here + 1, dtype=tf.int64) * b) // total
                pick = lambda j: tf.nest.map_structure(lambda t: t[cuts[j]:cuts[j + 1]], batch)  # noqa: E731
                out = tf.data.Dataset.range(here).map(pick)
                return out.map(lambda *e: e[0]) if len(batch) == 1 else out
            return ds.flat_map(parts)

        ds = make_global_batches(split)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return ds.with_options(options)

    return strategy.distribute_datasets_from_function(fn)


def broadcast_from_chief(strategy, variables, chief: bool, extra: float = 0.0) -> float:
    """Give every worker the chief's values of ``variables`` (and of ``extra``, a number).

    One all-reduce of a float64 vector to which the other workers contribute zeros: the
    sum is the chief's values, exactly (float32 and integers below 2^53 survive float64).

    Returns:
        The chief's ``extra``.
    """
    parts = [np.asarray(v.numpy(), np.float64).ravel() for v in variables]
    flat = np.concatenate(parts + [np.asarray([extra], np.float64)]) * (1.0 if chief else 0.0)
    total = sum_over_workers(strategy, flat)
    start = 0
    for var, part in zip(variables, parts):
        var.assign(total[start:start + part.size].reshape(var.shape).astype(np.dtype(getattr(var.dtype, "as_numpy_dtype", var.dtype))))
        start += part.size
    return float(total[-1])


def state_variables(model) -> list:
    """Every variable a backup restores: the model's and the optimizer's, each once."""
    seen, out = set(), []
    for var in list(model.variables) + list(model.optimizer.variables):
        key = id(getattr(var, "value", var))
        if key not in seen:
            seen.add(key)
            out.append(var)
    return out


def fit(model, strategy, train_data, val_data, epochs: int, steps_per_epoch: int, initial_epoch: int,
        callbacks, chief: bool, say=print):
    """Train ``model`` under ``strategy`` for epochs ``initial_epoch`` ... ``epochs - 1``.

    Args:
        train_data, val_data: distributed datasets (:func:`distribute`); the training
            one endless, starting at ``initial_epoch``.
        callbacks: Keras callbacks; the chief passes the run directory's, the others
            only those that write nothing.
        chief: whether this worker prints and writes.

    Each epoch's logs are the means over its steps of the global batch's mean (nats per
    image), and ``val_*`` the means over the validation batches, as ``fit`` computes them
    on one machine. Training stops on every worker at once: a non-finite loss is seen by
    all (it is the all-reduced global value), and a Ctrl-C on any worker is all-reduced at
    the epoch's end.

    Returns:
        ``keras.callbacks.History`` whose ``history`` maps each metric to its per-epoch
        values (as ``fit`` returns).
    """
    import keras
    import tensorflow as tf

    names = list(model.metric_names)
    sum_ = tf.distribute.ReduceOp.SUM

    def global_means(values, batch):
        ctx = tf.distribute.get_replica_context()
        b = tf.cast(tf.shape(tf.nest.flatten(batch)[0])[0], tf.float32)
        packed = tf.stack([tf.cast(values[k], tf.float32) for k in names])
        packed = tf.where(b > 0, packed * b, tf.zeros_like(packed))  # an empty held-out part adds nothing
        total = ctx.all_reduce(sum_, tf.concat([packed, [b]], 0))
        return total[:-1] / total[-1]

    @tf.function
    def train_step(iterator):
        out = strategy.run(lambda batch: global_means(model.apply_step(batch), batch), args=(next(iterator),))
        return strategy.experimental_local_results(out)[0]

    @tf.function
    def val_step(batch):
        out = strategy.run(lambda b: global_means(model.evaluate_step(b), b), args=(batch,))
        return strategy.experimental_local_results(out)[0]

    cbs = keras.callbacks.CallbackList(callbacks, model=model)
    history = {}
    iterator = iter(train_data)
    cbs.on_train_begin()  # the chief's BackupAndRestore loads the backup, if any
    broadcast_from_chief(strategy, state_variables(model), chief)
    logs = {}
    for epoch in range(initial_epoch, epochs):
        cbs.on_epoch_begin(epoch)
        total = np.zeros(len(names))
        started = time.perf_counter()
        for step in range(steps_per_epoch):
            cbs.on_train_batch_begin(step)
            total += train_step(iterator).numpy()
            logs = dict(zip(names, (total / (step + 1)).tolist()))
            cbs.on_train_batch_end(step, logs)
            if model.stop_training:
                break
        if chief and say:
            say(f"epoch {epoch + 1}/{epochs}: " + " ".join(f"{k} {v:.4f}" for k, v in logs.items())
                + f" ({time.perf_counter() - started:.1f} s)")
        if model.stop_training:
            break
        cbs.on_test_begin()
        val_total, batches = np.zeros(len(names)), 0
        for batch in val_data:
            val_total += val_step(batch).numpy()
            batches += 1
        val_logs = dict(zip(names, (val_total / max(batches, 1)).tolist()))
        cbs.on_test_end(val_logs)
        logs.update({f"val_{k}": v for k, v in val_logs.items()})
        cbs.on_epoch_end(epoch, logs)
        for key, value in logs.items():
            history.setdefault(key, []).append(value)
        if sum_over_workers(strategy, [float(model.stop_training)])[0] > 0:
            model.stop_training = True
            break
    cbs.on_train_end(logs)
    out = keras.callbacks.History()
    out.history = history
    return out


def check_last_batch(n: int, batch_size: int, replicas: int) -> None:
    """Refuse an epoch whose last, partial batch has fewer images than there are replicas
    (a replica would get none, and its batch mean would be undefined).

    Raises:
        TfvaeError: naming the sizes and two ways out.
    """
    rest = n % batch_size
    if 0 < rest < replicas:
        raise TfvaeError(f"--strategy multiworker: the training split ({n} images) leaves a last batch of {rest} "
                         f"image(s) for {replicas} replicas; change --batch-size or --max-train-examples so that "
                         f"N mod batch is 0 or at least {replicas}")


def evaluate_sharded(strategy, evaluate_block, n: int, block: int, widths: dict) -> dict:
    """Run ``evaluate_block(start, stop)`` (-> dict of per-image arrays, leading axis =
    images) on this worker's blocks and all-reduce the results over the workers.

    Blocks [j·b, (j+1)·b) go to worker j mod W. With ``block`` a multiple of the images
    one batched call evaluates, every image is computed in the same call, with the same
    noise, as on one machine; the all-reduce adds zeros elsewhere, so the gathered arrays
    equal the one-machine arrays exactly.

    Args:
        widths: key -> per-image shape (``()`` for a scalar per image), the same on every
            worker.

    Returns:
        key -> float64 array [n, *widths[key]].
    """
    workers, me = cluster_from_env()["workers"], _worker_rank(strategy)
    keys = sorted(widths)
    sizes = {k: int(np.prod(widths[k], dtype=np.int64)) for k in keys}
    offsets = dict(zip(keys, np.cumsum([0] + [n * sizes[k] for k in keys])[:-1].tolist()))
    flat = np.zeros(sum(n * sizes[k] for k in keys), np.float64)
    for j, start in enumerate(range(0, n, block)):
        if j % workers != me:
            continue
        stop = min(n, start + block)
        arrays = evaluate_block(start, stop)
        for k in keys:
            a = np.asarray(arrays[k], np.float64).reshape(stop - start, sizes[k])
            flat[offsets[k] + start * sizes[k]: offsets[k] + stop * sizes[k]] = a.ravel()
    total = sum_over_workers(strategy, flat)
    return {k: total[offsets[k]: offsets[k] + n * sizes[k]].reshape((n, *widths[k])) for k in keys}


def _worker_rank(strategy) -> int:
    """0 for the chief, then the workers in order (the chief-less cluster's worker 0 is 0)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 0
    spec = resolver.cluster_spec().as_dict()
    order = [("chief", i) for i in range(len(spec.get("chief", [])))] + \
            [("worker", i) for i in range(len(spec.get("worker", [])))]
    return order.index((resolver.task_type, resolver.task_id))


def seconds_per_step_allreduce(strategy, size: int, repeats: int = 20) -> float:
    """Median wall time (seconds) of one all-reduce of ``size`` float32 values over the
    workers: the communication each training step pays for a model of ``size`` weights."""
    import tensorflow as tf

    value = strategy.experimental_distribute_values_from_function(lambda ctx: tf.ones([size], tf.float32))

    @tf.function
    def once():
        return strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)

    once()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        once().numpy()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) if times else math.nan
