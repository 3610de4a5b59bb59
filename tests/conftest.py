"""Suite-wide isolation: no test touches the real home, hub or data dir."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Set before anything imports transformers / huggingface_hub.
_SESSION_ROOT = Path(tempfile.mkdtemp(prefix="arkor-nb-tests-"))
os.environ["HOME"] = str(_SESSION_ROOT / "home")
os.environ["ARKOR_NB_HOME"] = str(_SESSION_ROOT / "arkor-nb-home")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HOME"] = str(_SESSION_ROOT / "hf")
os.environ.pop("ARKOR_CLOUD_API_URL", None)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
(_SESSION_ROOT / "home").mkdir(parents=True, exist_ok=True)
# Backstop: a server auto-launched by a test exits by itself once idle.
os.environ.setdefault("ARKOR_NB_IDLE_TIMEOUT_S", "300")


def _stop_servers_under(root: Path) -> None:
    """SIGTERM every local server whose runtime file lies under ``root``."""
    import json
    import signal

    for runtime in root.rglob("server.json"):
        try:
            pid = int(json.loads(runtime.read_text())["pid"])
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError, KeyError, TypeError):
            continue


def pytest_sessionfinish(session, exitstatus):  # noqa: ARG001 - pytest hook signature
    """Leave no background server behind (CI ends with a clean machine)."""
    _stop_servers_under(_SESSION_ROOT)
    basetemp = session.config._tmp_path_factory.getbasetemp()  # noqa: SLF001
    _stop_servers_under(Path(basetemp))
