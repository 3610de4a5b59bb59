"""A saved, executed notebook still shows its runs without a kernel (GitHub, nbviewer).

nbconvert's HTML is what a kernel-less viewer shows: widget outputs there are
at best a script tag waiting for a widget manager (from a CDN) and at worst
their text/plain placeholder. So a live panel replaces its own output with its
static snapshot when the run ends: an inline SVG curve plus the summary.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import nbformat
import pytest
from bs4 import BeautifulSoup
from nbconvert import HTMLExporter

from tests.notebooks.binder_env import BUILD_TIMEOUT_S

# executed(): the first test to ask for a notebook builds the Binder environment
pytestmark = [pytest.mark.slow, pytest.mark.timeout(BUILD_TIMEOUT_S + 300)]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _render(nb: nbformat.NotebookNode) -> BeautifulSoup:
    body, _ = HTMLExporter().from_notebook_node(nb)
    return BeautifulSoup(body, "html.parser")


def test_saved_quickstart_shows_the_run_without_a_kernel(
    executed: Callable[[str], nbformat.NotebookNode],
) -> None:
    nb = executed("quickstart.ipynb")
    code = [c for c in nb.cells if c.cell_type == "code"]
    soup = _render(nb)
    rendered = soup.select(".jp-CodeCell")
    assert len(rendered) == len(code)

    panel_cells = [
        (cell, html)
        for cell, html in zip(code, rendered, strict=True)
        if "ak.live(" in cell.source
    ]
    assert panel_cells, "the quickstart displays a live panel"
    for cell, html in panel_cells:
        # The panel's output was replaced by its snapshot when the run ended: one
        # output, no widget reference (nothing to show "model not found" on reopening)
        # and no stale text/plain stand-in ("<arkor_nb live panel ... step 0>").
        assert len(cell.outputs) == 1, cell.outputs
        assert WIDGET_VIEW not in cell.outputs[0].get("data", {})
        assert "live panel" not in html.get_text()
        snapshots = html.select(".arkor-snapshot")
        assert len(snapshots) == 1, f"one static snapshot under:\n{cell.source}"
        snapshot = snapshots[0]
        svg = snapshot.find("svg")
        assert svg is not None and svg.find(["path", "polyline"]) is not None
        text = snapshot.get_text(" ", strip=True)
        assert "completed" in text and "quickstart" in text
        assert re.search(r"\b60\b", text), "the summary names the final step"
        # Offline: no script and nothing fetched from anywhere.
        assert snapshot.find("script") is None
        assert not snapshot.find_all(src=True) and not snapshot.find_all(href=True)


def test_saved_compare_and_replay_render_without_a_kernel(
    executed: Callable[[str], nbformat.NotebookNode],
) -> None:
    """ak.replay / ak.compare outputs are plain HTML+SVG: they render anywhere."""
    soup = _render(executed("compare-runs.ipynb"))
    assert "Traceback" not in soup.get_text()
    svgs = [s for s in soup.select(".jp-OutputArea-output svg") if s.find(["path", "polyline"])]
    assert len(svgs) >= 3, "compare, replay and compare-with-a-record each draw curves"
    text = soup.get_text(" ", strip=True)
    assert "lr-0.003" in text and "lr-0.0003" in text
