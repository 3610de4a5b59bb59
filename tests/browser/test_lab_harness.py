"""The harness itself works: a real widget click in real JupyterLab reaches the kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.conftest import ARTIFACTS
from tests.browser.lab import LabPage, poll, write_notebook

pytestmark = pytest.mark.slow


def test_ipywidgets_button_click_reaches_the_kernel(lab_page: LabPage, lab_root: Path) -> None:
    marker = lab_root / "clicked.txt"
    write_notebook(
        lab_root / "harness.ipynb",
        [
            "import ipywidgets as w\n"
            "from pathlib import Path\n"
            "button = w.Button(description='Press me')\n"
            "button.add_class('harness-button')\n"
            "def on_click(_):\n"
            "    Path('clicked.txt').write_text('clicked')\n"
            "    button.description = 'Pressed'\n"
            "button.on_click(on_click)\n"
            "button",
        ],
    )
    lab_page.open("harness.ipynb", workspace="harness")
    lab_page.run_all()

    button = lab_page.page.locator(".harness-button")
    button.wait_for(state="visible", timeout=120_000)
    lab_page.wait_kernel_idle()
    button.click()

    # Kernel-side evidence first (the handler ran), then the DOM round trip.
    poll(marker.exists, timeout=60, what="the click handler to write clicked.txt")
    assert marker.read_text() == "clicked"
    poll(lambda: button.inner_text().strip() == "Pressed", timeout=60, what="button label update")
    lab_page.screenshot(ARTIFACTS / "harness-button.png")
