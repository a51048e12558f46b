"""The scan's shards on Ray (`--ray`): the same `scan.compute_shard`, run by model actors of Ray
Data's `map_batches` instead of the calling process.

Imported only when asked for, so that without `--ray` nothing of Ray is loaded. The driver
writes each pending shard's windows to the work folder (`shards.write_windows`), then runs one
Ray dataset of shard numbers through a pool of actors of `ShardActor` (one per GPU, or CPU
actors: `actor_plan`): each actor loads the model once and keeps it for every shard it is
given. Each actor runs as many torch
threads as the calling process (a CPU matmul's sums depend on the thread count, so every shard
is bit-identical to the single-process run's) and asks Ray for CPU_PER_ACTOR CPUs, so that Ray
Data's own tasks still get a share of a small machine. An actor writes its shard's summary as a
Parquet file, atomically, stamped with the actor's id, and removes the shard's windows; the
caller (`scan.run_scan`) then merges every shard in order, so the result is the same as without
Ray.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from lazarus.analyses.scan import Executor, compute_shard
from lazarus.analyses.shards import ScanSettings, read_windows, windows_path, write_windows
from lazarus.engine.handle import Handle, ModelHandle
from lazarus.errors import LazarusError, first_line
from lazarus.io.corpus import Window

CPU_PER_ACTOR = 0.5  # a fraction: on 2 cores, whole CPUs for the actors starve the read tasks


class ShardActor:
    """A Ray Data callable class: loads the model once, then computes and writes shards."""

    def __init__(self, model: str, options: dict[str, Any], settings: dict[str, Any],
                 folder: str, token_budget: int | None, max_batch: int | None,
                 threads: int) -> None:
        import uuid

        import torch


        torch.set_num_threads(threads)
        self.settings = ScanSettings(**{**settings, **{
            key: None if settings[key] is None else tuple(settings[key])
            for key in ("neurons", "direction")}})
        self.loaded = Handle(model, whole=False, **options).weights(self.settings.layer)
        self.folder = Path(folder)
        self.limits = token_budget, max_batch
        self.stamp = {"actor": uuid.uuid4().hex, "host": platform.node()}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sizes, errors = [], []
        for number in batch["shard"]:
            shard = read_windows(self.folder, int(number))
            try:
                compute_shard(self.loaded, self.folder, int(number), shard, self.settings,
                              *self.limits, parquet=True, stamp=self.stamp)
            except LazarusError as err:  # handed back as data: Ray would wrap it in pages
                sizes.append(0)
                errors.append(str(err))
                continue
            windows_path(self.folder, int(number)).unlink(missing_ok=True)
            sizes.append(len(shard))
            errors.append("")
        return {"shard": np.asarray(batch["shard"]), "windows": np.asarray(sizes),
                "error": np.asarray(errors)}


def actor_plan(device: str, cluster: dict[str, float], threads: int,
               asked: int | None) -> tuple[int, dict[str, float], str | None]:
    """(actors, Ray resources per actor, a warning or None) for a model run on `device` (the
    --device setting) by a cluster with `cluster` resources (`ray.cluster_resources()`).

    One actor per GPU when the model may run on GPUs and the cluster has some (Ray then shows
    each actor its own GPU, and "auto" picks it); otherwise CPU actors, by default as many as
    the cluster's CPUs hold actors of `threads` torch threads. Each actor asks for only
    CPU_PER_ACTOR CPUs, so that Ray Data's own tasks are not starved.
    """
    gpus = int(cluster.get("GPU", 0))
    if device.startswith("cuda") and not gpus:
        raise LazarusError(f"--device {device} was given but the Ray cluster has no GPU (give "
                           "--device cpu, or a cluster with GPUs)")
    if device != "cpu" and gpus:
        if asked is not None and asked > gpus:
            return gpus, {"num_cpus": CPU_PER_ACTOR, "num_gpus": 1}, (
                f"--ray-workers {asked} is more than the cluster's {gpus} GPUs; using {gpus} "
                "(one model actor per GPU)")
        return asked or gpus, {"num_cpus": CPU_PER_ACTOR, "num_gpus": 1}, None
    default = max(1, int(cluster.get("CPU", 1) // max(threads, 1)))
    return asked or default, {"num_cpus": CPU_PER_ACTOR}, None


def ray_executor(model: ModelHandle, settings: ScanSettings, folder: Path, workers: int | None,
                 token_budget: int | None, max_batch: int | None,
                 address: str | None = None) -> Executor:
    """Shards run by `workers` actors (None: `actor_plan`'s choice) of a local Ray runtime, or
    of the cluster at `address` (whose workers must see the work folder and the model at the
    same paths)."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise LazarusError("--ray needs Ray Data (pip install 'lazarus[ray]')") from None
    import torch

    if address is not None:
        check_address(address)
    s = model.settings
    options = {"device": s.device, "dtype": s.dtype, "trust_remote_code": s.trust_remote_code,
               "device_map": s.device_map, "use_cache": False}
    arguments = {"model": model.model_id, "options": options, "settings": asdict(settings),
                 "folder": str(folder), "token_budget": token_budget, "max_batch": max_batch,
                 "threads": torch.get_num_threads()}

    def execute(work: Iterable[tuple[int, list[Window]]], report: Callable[[int], None]) -> None:
        numbers = []
        for number, shard in work:  # the windows go to disk: the driver holds one shard
            write_windows(folder, number, shard)
            numbers.append(number)
        if not numbers:
            return
        started = not ray.is_initialized()
        try:
            if started:
                _start(ray, address)
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = False
            actors, resources, warning = actor_plan(s.device, ray.cluster_resources(),
                                                    arguments["threads"], workers)
            if warning is not None:
                model.warn(warning)
            mapped = ray.data.from_items([{"shard": n} for n in numbers]).map_batches(
                ShardActor, fn_constructor_kwargs=arguments, batch_size=1, **resources,
                compute=ray.data.ActorPoolStrategy(size=min(actors, len(numbers))))
            for row in mapped.iter_rows():
                if row["error"]:  # the user's error, in one line, as without Ray
                    raise LazarusError(str(row["error"]))
                report(int(row["windows"]))
        except BaseException:  # failed, interrupted or terminated: the actors stop now
            if started and ray.is_initialized():
                ray.shutdown()
            raise
        finally:  # the shards' windows, of the shards done or not (a rerun writes them again)
            for number in numbers:
                windows_path(folder, number).unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # kept while another run still uses it
                windows_path(folder, 0).parent.rmdir()

    return execute


def _start(ray: Any, address: str | None) -> None:
    """`ray.init`, quiet, leaving this process's SIGINT and SIGTERM handlers as they were (Ray
    installs its own, which ignore a SIGINT sent by `kill` and dump a stack on SIGTERM)."""
    # The C++ core's log: at its default level it says that Ray Data's own actors have
    # arguments in the object store (ray-project/ray#53727); the user may set another.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        with _stderr_kept_unless_failing():
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.ERROR)
            except Exception as err:  # Ray's pages of retries and tracebacks, as one line
                raise LazarusError(init_failure(err, address)) from None
    finally:
        for number, handler in handlers.items():
            with contextlib.suppress(ValueError, TypeError):  # not the main thread
                signal.signal(number, handler)
    for name in ("ray", "ray.data"):  # Ray Data's notes are not the user's business, nor
        logging.getLogger(name).setLevel(logging.CRITICAL)  # its logs of what is raised


def init_failure(err: BaseException, address: str | None) -> str:
    """What failed in `ray.init` (`err`, with its causes), and the fix, in one line. Since Ray
    2.5x a cluster started by `ray start` asks for a token (~/.ray/auth_token on its head
    node), which a process connecting to an address sends only with RAY_AUTH_MODE=token."""
    chain: list[BaseException] = []
    while err is not None and len(chain) < 8:
        chain.append(err)
        err = err.__cause__ or err.__context__
    text = " ".join(f"{type(e).__name__}: {e}" for e in chain)
    where = "a local Ray runtime" if address is None else f"the Ray cluster at {address}"
    token = ("the cluster's token, which `ray get-auth-token` prints on its head node, in "
             "~/.ray/auth_token, in a file named by RAY_AUTH_TOKEN_PATH, or in RAY_AUTH_TOKEN")
    if not any(word in text for word in ("AuthenticationError", "InvalidAuthToken",
                                          "Unauthenticated")):
        reason = first_line(chain[0])
        return (f"cannot connect to {where} ({reason}; check that it is up with `ray status` "
                "there, and that its Ray version is this one's)")
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return (f"{where} asks for a token (Ray's token authentication): export "
                f"RAY_AUTH_MODE=token, and give {token}")
    if "no authentication token was found" in text:
        return f"RAY_AUTH_MODE=token but no token was found (give {token})"
    return f"{where} refused this process's token (give {token})"


@contextlib.contextmanager
def _stderr_kept_unless_failing() -> Iterator[None]:
    """Hold what is written to file descriptor 2 (Ray's C++ core's notes as it starts, and
    those of the processes it starts), and show it only if the block fails with more than a
    one-line `LazarusError`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except LazarusError:
            raise
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def check_address(address: str) -> None:
    """Refuse in one line, within seconds, a --ray-address that is not HOST:PORT or that
    nothing answers at (`ray.init` would wait for ever)."""
    if address == "auto":
        return
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or not host or not (port.isascii() and port.isdigit()):
        raise LazarusError(f"--ray-address {address!r} is not HOST:PORT (give the cluster's "
                           "head node, e.g. 10.0.0.5:6379, or auto)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as err:
        raise LazarusError(f"nothing answers at --ray-address {address} "
                           f"({err.strerror or err}; start the cluster with ray start --head, "
                           "or give its head node's HOST:PORT)") from None
