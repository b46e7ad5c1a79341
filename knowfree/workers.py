"""Trainings side by side: a pool of spawned processes on this machine, or Ray tasks.

``train_in_workers`` is what notebooks 04/05's grids (``experiment.train_many``) and
``reproduce``'s ``train_ahead`` call; each worker runs ``knowfree.train.train`` on one config
into one run folder, so a run is the same whichever way it was scheduled. ``kill PID`` of the
caller ends its workers too (``sigterm_as_exit``): an orphan would go on writing a run folder
that the next call trains a second time beside it. ``knowfree.sweep`` uses the same guard for
its ``python -m knowfree train`` processes.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path


def _trained_in_child(config: dict, folder: str) -> dict:
    """One run, in a worker process or a Ray task."""
    from knowfree.train import train
    return train(config, run_dir=Path(folder), progress=False)


def train_in_workers(todo: dict[Path, tuple[dict, bool]], jobs: int, progress: bool,
                     backend: str = "process") -> dict[Path, dict]:
    """Train the runs ``folder -> (config, keep weights)`` in ``jobs`` spawned processes, or as
    Ray tasks of one CPU each (``backend`` 'ray'); their metrics by folder. Weights not kept are
    deleted once the metrics are written."""
    if backend == "ray":
        out = _train_on_ray(todo, jobs, progress)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # ProcessPoolExecutor, not multiprocessing.Pool: a worker killed from outside (out of
        # memory) fails its run here, where Pool would wait for it forever
        pool = ProcessPoolExecutor(max_workers=min(jobs, len(todo)),
                                   mp_context=multiprocessing.get_context("spawn"))
        with sigterm_as_exit():  # a SystemExit here terminates the workers below
            try:
                pending = {}
                for folder, (config, _) in todo.items():
                    pending[folder] = pool.submit(_trained_in_child, config, str(folder))
                    if progress:
                        print(f"training {folder.name} in a worker process", file=sys.stderr, flush=True)
                out = {folder: future.result() for folder, future in pending.items()}
            except BaseException:
                # Python 3.11's executor has no way to stop a running task: end its processes
                # (terminate_workers() arrives in 3.14)
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.terminate()
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    for folder, (_, keep) in todo.items():
        if not keep:
            (folder / "model.safetensors").unlink(missing_ok=True)  # grids keep only scores
    return out


def _train_on_ray(todo: dict[Path, tuple[dict, bool]], jobs: int, progress: bool) -> dict[Path, dict]:
    """Each run one Ray task asking for one CPU: on a local instance with ``jobs`` CPUs, or on
    the cluster $RAY_ADDRESS names (whose nodes need this checkout and the work folder at the
    same paths). The task is the worker function of the process backend, so the runs are the same."""
    import ray

    from knowfree.sweep import start_ray

    start_ray(os.environ.get("RAY_ADDRESS") or None, jobs, cpus=1, gpus=0)
    try:
        task = ray.remote(num_cpus=1)(_trained_in_child)
        refs = {folder: task.remote(config, str(folder)) for folder, (config, _) in todo.items()}
        if progress:
            print(f"training {len(refs)} runs as Ray tasks", file=sys.stderr, flush=True)
        return {folder: ray.get(ref) for folder, ref in refs.items()}
    finally:
        ray.shutdown()


@contextlib.contextmanager
def sigterm_as_exit():
    """While inside, SIGTERM (`kill PID`) raises SystemExit(143) in the main thread, so the
    caller's `finally` can end the processes it started; elsewhere (a worker thread) nothing
    changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminated(signum, frame):
    raise SystemExit(128 + signum)
