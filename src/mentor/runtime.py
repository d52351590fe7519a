"""Where and in what precision a run computes: devices and mixed precision.

Data parallelism is Keras's own (`keras.distribution.DataParallel`, JAX backend): the model,
optimizer and recipe state (step, AdaMatch's class averages, EMA) are replicated on every
device, each batch is split across them, and XLA sums the gradients. Every mean in a loss
or a batch-norm statistic is over the *global* batch, so N devices compute what one device
computes with the same `train.batch_size`: the config's batch is the global batch, its
learning rate belongs to that batch, and changing the device count changes neither (no
learning-rate scaling rule is applied or needed). tests/test_runtime.py checks one step of
each recipe on two devices against one.

Many processes (hosts): `start_processes` joins this process to a multi-process JAX job
(before any JAX computation); from then on the devices of every process form one mesh, each
process's loaders produce only its consecutive share of every global batch
(`process_shard`; Keras's JAX trainer concatenates the shares in process order with
`jax.make_array_from_process_local_data`), predictions are gathered to every process
(`mentor.inference.predict`), and process 0 alone writes the run directory (`writes`).
tests/two_processes.py checks one step of each recipe on two processes against one.

Mixed precision is Keras's dtype policy: layers compute in bfloat16 or float16 with float32
variables; mentor's input rescaling, augmentations, logits, losses and softmaxes stay in
float32 (models/_common.py, augment/), and Keras scales float16 losses itself.
"""

from __future__ import annotations

import contextlib
import os
import sys

import keras
import numpy as np

from mentor.compat import jax_started
from mentor.errors import UsageError

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def plan_devices(requested: int, global_batches=(1,)) -> list:
    """The devices a run will use: `requested` of them, 0 meaning all visible. More than one
    needs the JAX backend and global batches they divide. In a multi-process job `requested`
    counts each process's devices (0: all of its own) and the run uses that many of every
    process, so the global batch is split over requested × processes devices."""
    if requested < 0:
        raise UsageError(f"runtime.devices must be ≥ 0 (0 → all visible), got {requested}.")
    if keras.backend.backend() != "jax":
        if requested > 1:
            raise UsageError(
                f"runtime.devices = {requested}: data-parallel training runs on the JAX "
                "backend (Keras's distribution API); set KERAS_BACKEND=jax, or train on one "
                "device with --devices 1.")
        return []  # the backend's default device
    if process_shard()[1] > 1:
        return _plan_process_devices(requested, global_batches)
    visible = keras.distribution.list_devices()
    n = len(visible) if requested == 0 else requested
    if n > len(visible):
        raise UsageError(
            f"runtime.devices = {requested} but JAX sees {len(visible)} device(s) "
            f"({', '.join(visible)}). Ask for at most {len(visible)}, or 0 for all. (On CPU, "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N makes N virtual devices.)")
    _check_batches(global_batches, n)
    return visible[:n] if n > 1 else []


def _check_batches(global_batches, n: int, where: str = ""):
    for batch in global_batches:
        if n > 1 and batch % n:
            raise UsageError(
                f"train.batch_size = {batch} is the global batch, split evenly over {n} "
                f"devices{where}: make it a multiple of {n}.")


def _plan_process_devices(requested: int, global_batches) -> list:
    """The first `requested` devices of every process (all of each one's with 0), in
    process order: the order in which Keras lays the processes' batch shares end to end."""
    import jax

    local = jax.local_devices()
    k = len(local) if requested == 0 else requested
    if k > len(local):
        raise UsageError(
            f"runtime.devices = {requested} counts each process's devices, and this process "
            f"(process {jax.process_index()}) sees {len(local)}. Ask for at most "
            f"{len(local)}, or 0 for all of them.")
    processes = jax.process_count()
    _check_batches(global_batches, k * processes,
                   f" ({k} on each of {processes} processes)")
    mine = {}
    for device in jax.devices():
        mine.setdefault(device.process_index, []).append(device)
    return [f"{d.platform}:{d.id}" for p in sorted(mine) for d in mine[p][:k]]


@contextlib.contextmanager
def runtime(devices: int = 1, precision: str = "float32", global_batches=(1,)):
    """Set the precision policy and device layout for the models built inside; restore the
    previous ones afterwards. Yields what was chosen: {"devices": n, "precision": p}."""
    if precision not in PRECISIONS:
        raise UsageError(f"runtime.precision must be one of {', '.join(PRECISIONS)}, "
                          f"got {precision!r}.")
    chosen = plan_devices(devices, global_batches)
    old_policy = keras.mixed_precision.global_policy()
    old_distribution = keras.distribution.distribution()
    keras.mixed_precision.set_global_policy(precision)
    if chosen:
        # Not Keras's auto-sharding (tf.data only): mentor's loaders give each process its
        # share of every batch themselves (process_shard).
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=chosen, auto_shard_dataset=False))
    try:
        chose = {"devices": max(1, len(chosen)), "precision": precision}
        processes = process_shard()[1]
        if processes > 1:
            chose["processes"] = processes
        yield chose
    finally:
        keras.mixed_precision.set_global_policy(old_policy)
        keras.distribution.set_distribution(old_distribution)


def device_count() -> int:
    """How many devices the current distribution spreads a batch over (1 without one)."""
    distribution = keras.distribution.distribution()
    return int(np.prod(distribution.device_mesh.shape)) if distribution is not None else 1


def eval_batch_size(batch_size: int = 256) -> int:
    """`batch_size` rounded up to a multiple of the device count: each device gets a part."""
    n = device_count()
    return -(-batch_size // n) * n


# ----------------------------------------------------------------------------- processes

def process_shard() -> tuple[int, int]:
    """(this process's index, the number of processes): (0, 1) outside a multi-process JAX
    job. Reading it never starts JAX: a job must be joined before JAX computes anything."""
    jax = sys.modules.get("jax")
    if jax is None or not jax.distributed.is_initialized():
        return 0, 1
    return jax.process_index(), jax.process_count()


def writes() -> bool:
    """Whether this process writes the run directory: process 0 of a multi-process job (so
    every file is written once), the only process otherwise."""
    return process_shard()[0] == 0


def from_process_0(*values: int) -> tuple[int, ...]:
    """Process 0's `values` (whole numbers), in every process of a multi-process job: a
    decision it alone can make (it alone reads and writes the run directory) taken by all.
    A collective: every process must call it at the same point. As given with one process."""
    if process_shard()[1] == 1:
        return values
    from jax.experimental import multihost_utils

    agreed = multihost_utils.broadcast_one_to_all(np.asarray(values, dtype=np.int64))
    return tuple(int(v) for v in np.asarray(agreed))


def barrier(name: str):
    """Wait until every process of a multi-process job gets here (a no-op with one): after
    process 0 writes a file the others read next."""
    if process_shard()[1] > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


# Where each setting of a multi-process job is read from, flags first, then Keras's own
# environment variables (keras.distribution.initialize), then JAX's. JAX itself reads only
# JAX_COORDINATOR_ADDRESS; JAX_NUM_PROCESSES and JAX_PROCESS_ID are the common convention
# launchers set beside it.
_ENV = {
    "coordinator": ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "JAX_COORDINATOR_ADDRESS"),
    "num_processes": ("KERAS_DISTRIBUTION_NUM_PROCESSES", "JAX_NUM_PROCESSES"),
    "process_id": ("KERAS_DISTRIBUTION_PROCESS_ID", "JAX_PROCESS_ID"),
}
_FLAGS = {"coordinator": "--coordinator", "num_processes": "--num-processes",
          "process_id": "--process-id"}


def process_request(coordinator=None, num_processes=None, process_id=None,
                    environ=None) -> dict | None:
    """The multi-process job asked for by flags or environment variables, checked:
    {"coordinator": "HOST:PORT" or "auto", "num_processes": int, "process_id": int} (None
    for JAX to detect, with "auto"), or None when none is asked for."""
    environ = os.environ if environ is None else environ
    given = {"coordinator": coordinator, "num_processes": num_processes,
             "process_id": process_id}
    source = {k: _FLAGS[k] for k, v in given.items() if v is not None}
    for key, names in _ENV.items():
        for name in names:
            if given[key] is None and environ.get(name, "").strip():
                given[key], source[key] = environ[name].strip(), name
    if all(v is None for v in given.values()):
        return None
    if given["coordinator"] == "auto":
        # TPU pod slices, SLURM, Open MPI, Kubernetes: JAX reads the cluster's own settings
        given["coordinator"] = None
        request = {"coordinator": "auto", "num_processes": None, "process_id": None}
    else:
        missing = [k for k, v in given.items() if v is None]
        if missing:
            raise UsageError(
                "a multi-process job needs the coordinator's address, the number of "
                "processes and this process's id; "
                + ", ".join(f"{k} is missing ({_FLAGS[k]} or {' / '.join(_ENV[k])})"
                            for k in missing)
                + ". Give all three, or --coordinator auto on a cluster JAX detects (TPU "
                "pod slice, SLURM, Open MPI).")
        addresses = str(given["coordinator"]).split(",")  # Keras's list: the first leads
        request = {"coordinator": addresses[0].strip()}
        for key in ("num_processes", "process_id"):
            try:
                request[key] = int(given[key])
            except ValueError:
                raise UsageError(f"{source[key]} must be a whole number, got "
                                 f"{given[key]!r}.") from None
        host, _, port = request["coordinator"].rpartition(":")
        if not host or not port.isdigit():
            raise UsageError(
                f"{source['coordinator']} must be HOST:PORT (process 0's address and a free "
                f"port, e.g. 10.0.0.1:1234), got {given['coordinator']!r}.")
        if request["num_processes"] < 1:
            raise UsageError(f"{source['num_processes']} must be ≥ 1, got "
                             f"{request['num_processes']}.")
        if len(addresses) > 1 and len(addresses) != request["num_processes"]:
            raise UsageError(
                f"{source['coordinator']} lists {len(addresses)} addresses but the job has "
                f"{request['num_processes']} processes; list one a process, or only the "
                "coordinator's.")
        if not 0 <= request["process_id"] < request["num_processes"]:
            raise UsageError(
                f"{source['process_id']} = {request['process_id']} is not a process of a "
                f"{request['num_processes']}-process job: give 0 … "
                f"{request['num_processes'] - 1} (0 on the coordinator's host).")
        if request["num_processes"] == 1:
            return None  # one process: nothing to join
    if keras.backend.backend() != "jax":
        raise UsageError(
            f"a multi-process job ({', '.join(sorted(set(source.values())))}) runs on the JAX "
            f"backend (Keras's distribution API), and this is {keras.backend.backend()}: set "
            "KERAS_BACKEND=jax in every process, or drop those flags and variables.")
    return request


def start_processes(coordinator=None, num_processes=None, process_id=None) -> dict | None:
    """Join the multi-process JAX job asked for (`process_request`); a no-op when none is,
    or when this process has joined already. Must come before JAX computes anything: JAX
    fixes its devices then. Returns the request, or None."""
    request = process_request(coordinator, num_processes, process_id)
    if request is None:
        return None
    import jax

    if jax.distributed.is_initialized():
        return request
    if "JAX_CPU_COLLECTIVES_IMPLEMENTATION" not in os.environ:
        # CPU devices of different processes exchange gradients through gloo over TCP; JAX
        # 0.10 picks it by default, older versions had no CPU collectives unless asked.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    auto = request["coordinator"] == "auto"
    try:
        jax.distributed.initialize(
            coordinator_address=None if auto else request["coordinator"],
            num_processes=request["num_processes"], process_id=request["process_id"])
    except RuntimeError as error:
        if jax_started():
            raise UsageError(
                "the multi-process job must be joined before JAX computes anything: call "
                "mentor.runtime.start_processes() first thing in the program.") from None
        raise UsageError(f"cannot join the multi-process job at {request['coordinator']}: "
                         f"{error}") from None
    except ValueError as error:  # "auto" on a machine that is not a known cluster
        raise UsageError(f"--coordinator auto: {error}. Give --coordinator HOST:PORT, "
                         "--num-processes and --process-id instead.") from None
    print(f"mentor: process {jax.process_index()} of {jax.process_count()}, "
          f"{jax.local_device_count()} local of {jax.device_count()} devices", flush=True)
    return request
