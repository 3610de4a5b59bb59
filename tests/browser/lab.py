"""A throwaway JupyterLab on 127.0.0.1 plus headless Chromium, for browser tests.

Why a module of its own: the JupyterLab/Chromium quirks measured on this machine
(shared notes, notebook-ui.md) live in one place: isolated Jupyter dirs so no
user state leaks in, the networking flags without which Chromium floods refused
connections, one workspace per notebook so old tabs never come back, and
"kernel idle" read from the status bar (the toolbar says idle before a kernel
is even attached).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import nbformat
from playwright.sync_api import Browser, Locator, Page, Playwright
from playwright.sync_api import Error as PlaywrightError

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
KERNEL_IDLE_TEXT = "Python 3 (ipykernel) | Idle"


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def poll(condition: Callable[[], Any], *, timeout: float, interval: float = 0.25, what: str) -> Any:
    """Return the first truthy value of ``condition()`` or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last_error = exc
        else:
            if value:
                return value
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout:.0f}s waiting for {what}; last error: {last_error!r}"
    )


def write_notebook(path: Path, cells: list[str]) -> Path:
    """Write a python3 notebook made of code cells (kernelspec set so no kernel dialog)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


class LabServer:
    """``jupyter lab`` in its own process group, rooted at ``root``, with a random token."""

    def __init__(self, root: Path, scratch: Path, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.scratch = scratch
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_env = env or {}
        self.log_path = scratch / "jupyter-lab.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        dirs = {
            "JUPYTER_CONFIG_DIR": "config",
            "JUPYTER_DATA_DIR": "data",
            "JUPYTER_RUNTIME_DIR": "runtime",
            "IPYTHONDIR": "ipython",
            "JUPYTERLAB_SETTINGS_DIR": "lab-settings",
            "JUPYTERLAB_WORKSPACES_DIR": "lab-workspaces",
        }
        for var, name in dirs.items():
            (self.scratch / name).mkdir(parents=True, exist_ok=True)
            env[var] = str(self.scratch / name)
        # The kernel must import the package under test from this checkout.
        repo = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH", "")) if p)
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        env.update(self.extra_env)
        return env

    def _quiet_settings(self) -> None:
        """No news/update popup over the notebook (it would cover buttons)."""
        target = self.scratch / "lab-settings" / "@jupyterlab" / "apputils-extension"
        target.mkdir(parents=True, exist_ok=True)
        (target / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )

    def start(self, timeout: float = 120.0) -> None:
        self._quiet_settings()
        jupyter = Path(sys.executable).with_name("jupyter")
        cmd = [
            str(jupyter) if jupyter.exists() else "jupyter",
            "lab",
            "--no-browser",
            f"--IdentityProvider.token={self.token}",
            f"--port={self.port}",
            "--ip=127.0.0.1",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={self.root}",
            "--LabServerApp.open_browser=False",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.root,
            env=self._env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        poll(
            self._ready,
            timeout=timeout,
            interval=0.5,
            what=f"jupyter lab on {self.url} (log: {self.log_path})",
        )

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n{self.log()}")
        response = httpx.get(f"{self.url}/api/status", params={"token": self.token}, timeout=5)
        return response.status_code == 200

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the Jupyter Server REST API (kernels, sessions, contents)."""
        response = httpx.request(
            method,
            f"{self.url}{path}",
            headers={"Authorization": f"token {self.token}"},
            timeout=10,
            **kwargs,
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def notebook_url(self, relpath: str, workspace: str) -> str:
        return f"{self.url}/lab/workspaces/{workspace}/tree/{relpath}?token={self.token}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:  # shut kernels down cleanly first, so their children (backends) go too
            for kernel in self.api("GET", "/api/kernels"):
                self.api("DELETE", f"/api/kernels/{kernel['id']}")
        except Exception:  # noqa: BLE001 - best effort before terminating
            pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's chromium, headless (``playwright install`` cannot download browsers here).

    Playwright gives every launch a fresh temporary profile of its own.
    """
    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if executable is None:
        raise RuntimeError(
            "chromium is not installed: run `make browser` (apt-get install chromium)"
        )
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)


class LabPage:
    """One notebook open in its own JupyterLab workspace."""

    def __init__(self, page: Page, server: LabServer) -> None:
        self.page = page
        self.server = server

    def open(self, relpath: str, workspace: str, timeout: float = 120.0) -> None:
        self.page.goto(self.server.notebook_url(relpath, workspace), timeout=timeout * 1000)
        self.page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout * 1000)
        self.wait_kernel_idle(timeout)

    def wait_kernel_idle(self, timeout: float = 120.0) -> None:
        """The status bar says "<kernel> | Idle" only once a kernel is attached and idle."""
        self.page.get_by_text(KERNEL_IDLE_TEXT, exact=False).first.wait_for(timeout=timeout * 1000)

    def run_all(self) -> None:
        """Run > Run All Cells, through the menu as a user would."""
        self.page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        self.page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

    def screenshot(self, path: Path, selector: str | None = None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        if selector is None:
            self.page.screenshot(path=str(path))
            return path
        # An output that is re-rendered (the snapshot replacing itself on the final update) can be
        # detached mid-shot; the locator finds the new element on the next try.
        deadline = time.monotonic() + 30
        while True:
            try:
                self.page.locator(selector).first.screenshot(path=str(path))
                return path
            except PlaywrightError as exc:
                if "not attached" not in str(exc) or time.monotonic() > deadline:
                    raise


def e2e_home() -> Path:
    """The local-backend home for kernels started by end-to-end tests (browser, notebooks).

    Our own home, so the server those kernels start is always theirs, with
    their environment (ARKOR_NB_DATA_ROOTS), never one another test started
    with other settings. Its ``models/`` is the suite's shared models cache,
    so the built-in tiny model is still built once per session.
    """
    shared = Path(os.environ["ARKOR_NB_HOME"])
    home = shared.parent / "arkor-nb-home-e2e"
    (shared / "models").mkdir(parents=True, exist_ok=True)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    link = home / "models"
    if not link.is_symlink():
        link.symlink_to(shared / "models", target_is_directory=True)
    return home


def stop_local_server_started_since(before: Any, home: Path) -> None:
    """Stop the detached arkor-nb server a test's kernel started (not one that was already up).

    Kernels start it detached on purpose (it outlives a kernel restart); a test
    session must not leave it behind.
    """
    from arkor_nb.sdk.local_server import live_server

    info = live_server(home)
    if info is None or (before is not None and before.pid == info.pid):
        return
    try:
        os.kill(info.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    poll(lambda: live_server(home) is None, timeout=30, what=f"local server pid {info.pid} to stop")


def panel_points(where: Page | Locator) -> int:
    """Points on a live chart's loss curve (the exact values its hover reads).

    ``where``: the page (its first panel) or a locator of one panel.
    """
    js = """root => {
        const line = root && root.querySelector('.arkor-chart svg [data-xs]');
        return line ? line.dataset.xs.split(',').length : 0;
    }"""
    if isinstance(where, Locator):
        return int(where.evaluate(js)) if where.count() else 0
    return int(where.evaluate(f"({js})(document.querySelector('.arkor-panel'))"))


def lab_save(lab_page: LabPage) -> None:
    """File > Save (Ctrl+S) in the notebook, as a user would."""
    lab_page.page.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})
    lab_page.page.keyboard.press("Control+s")


def lab_restart_kernel(lab_page: LabPage) -> None:
    """Kernel > Restart Kernel…, then confirm the dialog."""
    page = lab_page.page
    page.locator(".lm-MenuBar-itemLabel", has_text="Kernel").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Restart Kernel…").first.click()
    page.locator(".jp-Dialog button", has_text="Restart").first.click()
