"""The one palette: status colours, series colours and the status badge.

The panel, the snapshot, the jobs table, ``compare`` and the demo report all
take their colours from here, so a status looks the same everywhere.
"""

from __future__ import annotations

import html

from arkor_nb.core.format import status_label
from arkor_nb.core.status import (
    CANCELLED,
    COMPLETED,
    CONNECTING,
    DETACHED,
    FAILED,
    PREPARING,
    QUEUED,
    RUNNING,
    SAVING,
)

STATUS_COLORS: dict[str, str] = {
    COMPLETED: "#2e7d32",
    FAILED: "#c62828",
    CANCELLED: "#ef6c00",
    RUNNING: "#1565c0",
    PREPARING: "#5e35b1",
    SAVING: "#5e35b1",
    QUEUED: "#6d4c41",
    CONNECTING: "#6d4c41",
    DETACHED: "#6d4c41",
}
UNKNOWN_STATUS = "#555555"

SERIES = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
LR_COLOR = "#7f7f7f"
GRID, FRAME, TEXT, MUTED = "#eee", "#ccc", "#333", "#555"
RIGHT, WRONG = "#e8f5e9", "#ffebee"  # backgrounds of a right / wrong field in eval examples
ERROR, WARN = "#c62828", "#ef6c00"


def series_color(index: int) -> str:
    return SERIES[index % len(SERIES)]


def status_color(status: str) -> str:
    return STATUS_COLORS.get(status, UNKNOWN_STATUS)


def badge(status: str) -> str:
    """``<span class="arkor-badge arkor-badge-<status>">``: the status as a coloured pill."""
    label = status_label(status)
    s = html.escape(str(status), quote=True)
    return (f'<span class="arkor-badge arkor-badge-{s}" style="background:{status_color(status)};'
            f'color:#fff;border-radius:3px;padding:1px 6px;font-size:90%">{html.escape(label)}</span>')
