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
