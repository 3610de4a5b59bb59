"""The one palette: status colours, series colours and the status badge.

The panel, the snapshot, the jobs table, ``compare`` and the demo report all
take their colours from here, so a status looks the same everywhere.
"""

from __future__ import annotations

import html

STATUS_COLORS: dict[str, str] = {
    "completed": "#2e7d32",
    "failed": "#c62828",
    "cancelled": "#ef6c00",
    "running": "#1565c0",
    "preparing": "#5e35b1",
    "saving": "#5e35b1",
    "queued": "#6d4c41",
    "connecting": "#6d4c41",
    "detached": "#6d4c41",
}
UNKNOWN_STATUS = "#555555"
# view-only states read better in words than in their code name
STATUS_LABELS: dict[str, str] = {"detached": "stopped watching"}

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
    label = STATUS_LABELS.get(status, status)
    s = html.escape(status, quote=True)
    return (f'<span class="arkor-badge arkor-badge-{s}" style="background:{status_color(status)};'
            f'color:#fff;border-radius:3px;padding:1px 6px;font-size:90%">{html.escape(label)}</span>')
