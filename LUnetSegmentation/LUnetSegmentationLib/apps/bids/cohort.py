"""Run one function over many scans on Dask: an embedded LocalCluster, or an existing cluster.

    results = run_tasks(fn, tasks, keys, workers=4)                  # LocalCluster, 4 processes
    results = run_tasks(fn, tasks, keys, scheduler="tcp://host:8786")  # SLURM/PBS/Kubernetes cluster

`fn(task)` runs in a worker process and returns a JSON-able record; it must catch its own errors
(a bad scan is a record, not an exception). What `fn` cannot catch is handled here: a worker that
dies mid-scan (killed, out of memory) makes the scheduler give the scan to another worker; a scan
that kills `allowed-failures` workers in a row comes back as a record with status "error".

One model load per worker: `worker_model(model, device)` caches the loaded model in the worker
process (keyed by model and device), so a worker loads it on its first scan and reuses it.
Dask is imported only here, and only when a cohort runs.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading

log = logging.getLogger("LUnetSegmentation")

# Per worker process: (model, device, threads) -> LoadedModel, and how many loads happened.
_models: dict = {}
_models_lock = threading.Lock()
model_loads = 0


def worker_model(model, device: str, threads: int | None = None):
    """The model loaded once in this (worker) process; torch limited to `threads` threads."""
    global model_loads
    key = (str(model), device)
    with _models_lock:
        if key not in _models:
            if threads:
                import torch

                torch.set_num_threads(int(threads))
            from ...runtime.pipeline import get_segmenter

            _models[key] = get_segmenter(model, device)
            model_loads += 1
        return _models[key]


def default_workers(memory_per_worker_gb: float = 2.0) -> int:
    """One single-threaded worker per core the process may use, fewer if memory is short."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    try:
        import psutil

        available_gb = psutil.virtual_memory().available / 2**30
        cores = min(cores, max(1, int(available_gb // memory_per_worker_gb)))
    except ImportError:
        pass
    return max(1, cores)


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None, threads_per_worker: int = 1):
    """A dask.distributed Client: to `scheduler` if given, else to a new LocalCluster of
    `workers` single-threaded worker processes (closed on exit)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as error:
        from ...runtime.preprocess import InputError

        raise InputError(
            "The BIDS App needs Dask: pip install 'dask[distributed]' (pinned in requirements.txt)."
        ) from error
    # Dask logs every worker start, restart and shutdown, and when a worker dies, the others and
    # the scheduler log the broken connections with tracebacks (at ERROR). The caller reports
    # each scan instead, so Dask's own logs are kept only with --verbose (root logger at INFO).
    quiet = logging.INFO if logging.getLogger().isEnabledFor(logging.INFO) else logging.CRITICAL
    for name in ("distributed", "dask"):
        logging.getLogger(name).setLevel(quiet)
    if scheduler:
        from ...runtime.preprocess import InputError

        try:
            client = Client(scheduler, timeout="15s")
        except (OSError, TimeoutError) as error:
            raise InputError(f"Cannot reach the Dask scheduler at {scheduler} ({error}). Is it running?") from error
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(
        n_workers=workers or default_workers(), threads_per_worker=threads_per_worker, processes=True,
        dashboard_address=None, silence_logs=quiet,
    )
    client = Client(cluster)
    try:
        # Ctrl+C is the client's to handle (it closes the cluster and says how to resume): the
        # workers ignore SIGINT, or each prints its own KeyboardInterrupt traceback. (Neither an
        # ignored nor a blocked SIGINT in the client survives into workers spawned by
        # multiprocessing without losing the Ctrl+C itself, so during the first seconds, while
        # the workers import, a Ctrl+C may still print their tracebacks; the run stops either way.)
        client.register_plugin(_ignore_sigint_plugin(), name="lunet-ignore-sigint")
        yield client
    finally:
        client.close()
        cluster.close()


def _ignore_sigint_plugin():
    """A worker plugin that makes a (LocalCluster) worker process ignore SIGINT."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class IgnoreSigint(WorkerPlugin):
        idempotent = True

        def setup(self, worker):
            import signal

            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, signal.SIG_IGN)

    return IgnoreSigint()


def run_tasks(fn, tasks: list[dict], keys: list[str], on_result=None, workers: int | None = None,
              scheduler: str | None = None, lost=None) -> list[dict]:
    """Submit fn(task) for every task and return the records in completion order.
    `on_result(record)` is called as each arrives; `lost(task, message)` makes the record for a
    task whose workers kept dying (default: status "error" with the message)."""
    if not tasks:
        return []
    from dask.distributed import as_completed
    from distributed import KilledWorker

    results = []
    with dask_client(workers, scheduler) as client:
        futures = client.map(fn, tasks, key=keys, pure=False)
        by_key = {future.key: task for future, task in zip(futures, tasks)}
        for future in as_completed(futures):
            task = by_key[future.key]
            try:
                record = future.result()
            except KilledWorker:
                message = ("the worker process died on every attempt at this scan (out of memory, or killed); "
                           "it was retried on other workers and given up")
                record = lost(task, message) if lost else {"status": "error", "error": message}
            except Exception as error:  # fn catches its own; this is Dask's (cancelled, lost scheduler)
                message = f"{type(error).__name__}: {error}"
                record = lost(task, message) if lost else {"status": "error", "error": message}
            future.release()
            results.append(record)
            if on_result is not None:
                on_result(record)
    return results
