"""Run a test worker on a few processes joined in a process group (gloo on CPU; nccl on GPUs).

:func:`spawn` starts ``world`` processes with ``torch.multiprocessing``; each joins the group
through a rendezvous file (``file://`` init) in a folder the test owns, so no TCP port is
picked, released and bound again by a rank later (another process could take it in between).
The group is up before the worker runs, so finetuner's ``DistributedContext.setup`` finds it
initialised and uses it; ``RANK``/``LOCAL_RANK``/``WORLD_SIZE`` are set as torchrun would.
"""

from __future__ import annotations

import importlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def spawn(
    worker: Callable[..., None], world: int, folder: Path, *args: Any, timeout: float = 600.0, backend: str = "gloo"
) -> None:
    """Run ``worker(rank, *args)`` on ``world`` ranks of a ``backend`` group and wait for all of them.

    ``worker`` must be a module-level function (it is pickled to the new processes). The
    rendezvous file is made fresh in a new folder under ``folder`` (the test's temporary
    folder), so two calls never share one. A rank that raises fails the test with that rank's
    traceback, and one killed by a signal with the signal (``torch.multiprocessing`` stops the
    other ranks); ``timeout`` guards against a hung group and is not a timing check.
    """
    if not dist.is_available():
        pytest.skip("this torch build has no torch.distributed")
    rendezvous = Path(tempfile.mkdtemp(prefix="rendezvous-", dir=folder)) / "store"
    init_method = rendezvous.resolve().as_uri()  # file:///...
    context = mp.spawn(_run, args=(worker, world, init_method, backend, args), nprocs=world, join=False)
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1):  # raises ProcessRaisedException / ProcessExitedException naming the rank
        if time.monotonic() > deadline:
            for process in context.processes:
                process.terminate()
            pytest.fail(f"the {world}-process {backend} group did not finish in {timeout:.0f} s")


def _run(rank: int, worker: Callable[..., None], world: int, init_method: str, backend: str, args: tuple[Any, ...]) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    importlib.import_module("torch._dynamo")  # before the group, as DistributedContext.setup does (see there)
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world)
    try:
        worker(rank, *args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
