"""The IPython side of a live run: is this a kernel, show a display, end a cell with one line."""

from __future__ import annotations

import asyncio
import sys
from typing import Any


class RunInterrupted(KeyboardInterrupt):
    """An interrupted ``run.result()`` / ``await run``: the message says what happened to the job.

    IPython prints ``_render_traceback_`` instead of a traceback, so the cell
    ends with that one line; ``except KeyboardInterrupt`` still catches it.
    """

    def _render_traceback_(self) -> list[str]:
        return [str(self)]


def is_cell_task() -> bool:
    """True when the current task is IPython running a cell (ipykernel cancels it on interrupt)."""
    task = asyncio.current_task()
    coro = task.get_coro() if task is not None else None
    return "run_cell_async" in getattr(coro, "__qualname__", "")


def in_jupyter_kernel() -> bool:
    """True inside a Jupyter kernel (where widgets can render)."""
    shell_mod = sys.modules.get("IPython")
    if shell_mod is None:
        return False
    try:
        ip = shell_mod.get_ipython()  # type: ignore[attr-defined]
    except Exception:
        return False
    return ip is not None and getattr(ip, "kernel", None) is not None


def show(obj: Any) -> Any:
    """Display ``obj`` as one updatable output; returns its display handle."""
    from IPython.display import display  # deferred: IPython only inside a kernel

    return display(obj, display_id=True)
