"""One job on several processes: the worker's side of ``torch.distributed``.

The job manager launches the worker under torchrun when a job asks for more
than one process (see ``local/server/torchrun.py``); torchrun sets ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` and transformers' ``Trainer`` runs
data-parallel (DDP: ``gloo`` on CPU, ``nccl`` on CUDA). The protocol stays one
stream:

- rank 0 alone reads stdin (the spec, then ``cancel``) and writes events;
  every other rank is silent (its fd 1 points at stderr).
- rank 0 validates the config and reads the dataset, then hands both to the
  other ranks with :meth:`Ranks.share` (a ``broadcast_object_list``), so the
  secrets never touch a disk and a joining host needs neither the data files
  nor the server's paths. An error on rank 0 is shared too, so every rank
  stops instead of waiting on a collective that never comes.
- cancel reaches every rank through :meth:`Ranks.sync_flag`, a broadcast from
  rank 0 that every rank runs at the same points (setup stages and the end of
  each optimizer step, by :func:`cancel_relay`), so they all stop together:
  stdin sets ``requested`` on rank 0, and the ``cancel`` the run obeys is set
  only there, on every rank at once.
- each rank dies with its torchrun agent (``PR_SET_PDEATHSIG``): a killed
  agent never leaves ranks behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
_PR_SET_PDEATHSIG = 1


class RankAbort(Exception):
    """Raised on a non-zero rank when rank 0 failed a shared step (rank 0 reports it)."""


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in the job's process group (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    nodes: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls) -> Ranks:
        """The ranks torchrun announced (``RANK``, ``WORLD_SIZE``, ...), or a lone process."""
        def num(name: str, default: int) -> int:
            try:
                return int(os.environ.get(name, default))
            except ValueError:
                return default

        world = num("WORLD_SIZE", 1)
        per_node = max(1, num("LOCAL_WORLD_SIZE", world))
        return cls(rank=num("RANK", 0), world_size=world, local_rank=num("LOCAL_RANK", 0),
                   nodes=max(1, world // per_node))

    def start(self) -> None:
        """Die with the agent, then join the process group (gloo; nccl too when CUDA is there)."""
        if not self.distributed:
            return
        die_with_parent()
        # accelerate picks cores / local processes threads when OMP_NUM_THREADS is unset;
        # the worker's own setting (ARKOR_NB_TORCH_THREADS, default 1) wins instead.
        os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("ARKOR_NB_TORCH_THREADS", "1"))
        import torch
        import torch.distributed as dist

        if dist.is_initialized():
            return
        if torch.cuda.is_available():
            torch.cuda.set_device(self.local_rank)
            # Objects (spec, rows, flags) travel over gloo; gradients over nccl.
            dist.init_process_group(backend="cpu:gloo,cuda:nccl")
        else:
            dist.init_process_group(backend="gloo")

    def share(self, value: T | None = None, error: BaseException | None = None) -> T:
        """Rank 0's ``value`` on every rank (rank 0 passes it, the others get it).

        Rank 0 passes ``error`` instead when its step failed: it is raised
        there, and :class:`RankAbort` on the other ranks.
        """
        if not self.distributed:
            if error is not None:
                raise error
            return value  # type: ignore[return-value]
        import torch.distributed as dist

        box: list[Any] = [("err", f"{type(error).__name__}: {error}") if error is not None
                          else ("ok", value)] if self.main else [None]
        dist.broadcast_object_list(box, src=0)
        kind, payload = box[0]
        if kind == "err":
            if self.main and error is not None:
                raise error
            raise RankAbort(payload)
        return payload  # type: ignore[no-any-return]

    def sync_flag(self, requested: threading.Event, agreed: threading.Event) -> bool:
        """Set ``agreed`` on every rank when ``requested`` is set on rank 0; returns it.

        Every rank must call this at the same point: it is a broadcast. One
        process: ``agreed`` follows ``requested`` (usually the same event).
        """
        if not self.distributed:
            if requested.is_set():
                agreed.set()
            return agreed.is_set()
        import torch
        import torch.distributed as dist

        value = torch.tensor([1 if (self.main and requested.is_set()) else 0], dtype=torch.int32)
        dist.broadcast(value, src=0)  # a CPU tensor: the gloo half of the group carries it
        if value.item():
            agreed.set()
        return agreed.is_set()

    def total(self, count: int) -> int:
        """``count`` summed over the ranks (each rank's own on one process). Every rank
        must call this at the same point: it is an all-reduce."""
        if not self.distributed:
            return count
        import torch
        import torch.distributed as dist

        value = torch.tensor([count], dtype=torch.int64)
        dist.all_reduce(value)  # a CPU tensor: the gloo half of the group carries it
        return int(value.item())

    def finish(self) -> None:
        """Leave the process group (quietly; a rank that failed may already be gone)."""
        if not self.distributed:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:  # noqa: BLE001 - the job's result is already reported
                pass


def describe_failure(ranks: Ranks, exc: BaseException) -> str:
    """A worker's error text; a collective broken by another rank says so first."""
    text = f"{type(exc).__name__}: {exc}"
    lost_peer = type(exc).__name__ == "DistBackendError" or any(
        mark in text for mark in ("by peer", "remote worker", "gloo/transport", "NCCL"))
    if ranks.distributed and lost_peer:
        return (f"another process of this {ranks.world_size}-process job stopped (killed, out of "
                f"memory or crashed; its output is in the job's worker.log), so rank "
                f"{ranks.rank} could not go on: {text[:300]}")
    return text


def die_with_parent() -> None:
    """SIGKILL this process when its parent (the torchrun agent) dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent or parent == 1:  # the agent died before prctl took effect
        os._exit(1)


def cancel_relay(ranks: Ranks, requested: threading.Event, cancel: threading.Event) -> Any:
    """A ``TrainerCallback`` that sets ``cancel`` on every rank at the same step end
    once rank 0 saw ``requested`` (the event callback then stops the run)."""
    from transformers import TrainerCallback

    class CancelRelay(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            if ranks.sync_flag(requested, cancel):
                control.should_training_stop = True
            return control

    return CancelRelay()
