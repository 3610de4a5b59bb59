"""GGUF files as a model source: check them cheaply, dequantize once, cache a plain copy.

transformers can read a GGUF file (with the ``gguf`` package), but it
dequantizes every tensor on each load (~30 s for a 135M model on 2 cores) and
refuses to ``save_pretrained`` the result. So the first load dequantizes and
saves a plain safetensors folder under ``<home>/models/gguf-<sha256>/``, keyed
by the file's content (a renamed or moved file is a cache hit; an edited one is
not); every later load is an ordinary ``from_pretrained`` of that folder.

The folder is built in a temp dir and renamed into place with a completion
marker inside, behind a file lock, so a process killed mid-build leaves
nothing that is ever loaded, and two processes asking at once build once.

``check_gguf`` reads only the header (magic, version, metadata, tensor table)
with ``struct``: it names a corrupt or truncated file or an architecture
transformers cannot read in milliseconds, before any job is created.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arkor_nb.core.errors import ConfigError

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
MARKER = "arkor_nb_gguf.json"
# Bump when the way the plain copy is made changes, so old copies are not reused.
CACHE_VERSION = 1
INSTALL_GGUF = "pip install gguf"

# GGUF metadata value types -> struct format of one scalar (8 = string, 9 = array).
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
            11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class GGUFInfo:
    """What the header says: enough to refuse a bad file before loading it."""

    path: Path
    version: int
    architecture: str
    name: str | None
    tensor_count: int
    data_bytes: int  # where the last tensor ends, from the start of the file


# Per process, keyed by (path, size, mtime): a server answering many chats with a
# GGUF base model hashes and parses the file once, not per request.
_HASHES: dict[tuple[str, int, int], str] = {}
_CHECKED: dict[tuple[str, int, int], GGUFInfo] = {}


class _Corrupt(Exception):
    """The header cannot be parsed (raised inside the reader, reported as ConfigError)."""


def gguf_missing_error(path: Path | str, field: str = "model") -> ConfigError:
    return ConfigError(field, f"reading the GGUF file {str(path)!r} needs the gguf package, which "
                       f"is not installed; install it with `{INSTALL_GGUF}` (or "
                       "`pip install 'arkor-nb[models]'`)")


def _require_gguf(path: Path, field: str) -> Any:
    try:
        import gguf
    except ImportError:
        raise gguf_missing_error(path, field) from None
    return gguf


def supported_architectures() -> list[str]:
    """GGUF architectures transformers can turn into a model (its own list, no torch import)."""
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    return sorted(k for k in GGUF_CONFIG_MAPPING if k not in ("general", "tokenizer"))


def _is_supported(architecture: str) -> bool:
    """Mirror transformers' own aliasing (mistral ships as llama, qwen2moe -> qwen2_moe...)."""
    supported = set(supported_architectures())
    aliases = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss",
               "minimax-m2": "minimax_m2", "t5encoder": "t5"}
    return architecture in supported or aliases.get(architecture) in supported


class _Reader:
    """Sequential little-endian reads over an mmap; every overrun is ``_Corrupt``."""

    def __init__(self, buf: mmap.mmap) -> None:
        self.buf = buf
        self.pos = 0

    def scalar(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise _Corrupt("the header ends early")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        n = self.scalar("<Q")
        if n > len(self.buf) - self.pos:
            raise _Corrupt("a metadata string runs past the end of the file")
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype, count = self.scalar("<I"), self.scalar("<Q")
            if etype in _SCALARS:  # skip fixed-size items in one jump
                size = struct.calcsize(_SCALARS[etype]) * count
                if size > len(self.buf) - self.pos:
                    raise _Corrupt("a metadata array runs past the end of the file")
                self.pos += size
            else:
                for _ in range(count):
                    self.value(etype)
            return None  # arrays are never needed here
        raise _Corrupt(f"unknown metadata value type {vtype}")


def check_gguf(path: Path | str, field: str = "model") -> GGUFInfo:
    """Parse the header of a GGUF file; one ConfigError naming the file and the fix if bad."""
    path = Path(path)
    gguf = _require_gguf(path, field)
    try:
        key = _stat_key(path)
    except OSError:
        key = None
    if key in _CHECKED:
        return _CHECKED[key]
    quant_sizes: dict[Any, tuple[int, int]] = gguf.GGML_QUANT_SIZES
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < 24:
                raise _Corrupt(f"it is only {size} bytes")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                info = _parse(path, buf, quant_sizes)
    except _Corrupt as exc:
        raise ConfigError(field, f"{str(path)!r} is not a readable GGUF file ({exc}); the file is "
                          "corrupt or was not fully downloaded: download or copy it again") from None
    except OSError as exc:
        raise ConfigError(field, f"cannot read {str(path)!r} ({exc.strerror}); check the path "
                          "and its permissions") from None
    if info.data_bytes > size:
        raise ConfigError(field, f"{str(path)!r} is truncated: its tensors need {info.data_bytes:,} "
                          f"bytes but the file has {size:,}; download or copy it again")
    if not _is_supported(info.architecture):
        raise ConfigError(field, f"{str(path)!r} holds a {info.architecture!r} model, an "
                          "architecture transformers cannot load from GGUF (it reads "
                          f"{', '.join(supported_architectures())}); use one of those, or the "
                          "model's original (non-GGUF) folder or Hugging Face id")
    if key is not None:
        _CHECKED[key] = info
    return info


def _parse(path: Path, buf: mmap.mmap, quant_sizes: dict[Any, tuple[int, int]]) -> GGUFInfo:
    r = _Reader(buf)
    if bytes(buf[:4]) != GGUF_MAGIC:
        raise _Corrupt(f"it starts with {bytes(buf[:4])!r}, not the GGUF magic {GGUF_MAGIC!r}")
    r.pos = 4
    version = r.scalar("<I")
    if version not in (2, 3):
        raise _Corrupt(f"unsupported GGUF version {version} (big-endian or too new)")
    n_tensors, n_kv = r.scalar("<Q"), r.scalar("<Q")
    if n_tensors > 1_000_000 or n_kv > 1_000_000:
        raise _Corrupt("implausible tensor or metadata counts")
    meta: dict[str, Any] = {}
    for _ in range(n_kv):
        key = r.string()
        meta[key] = r.value(r.scalar("<I"))
    architecture = meta.get("general.architecture")
    if not isinstance(architecture, str) or not architecture:
        raise _Corrupt("its metadata has no general.architecture")
    alignment = meta.get("general.alignment") or 32
    sizes = {int(k): v for k, v in quant_sizes.items()}
    end = 0
    for _ in range(n_tensors):
        r.string()
        n_dims = r.scalar("<I")
        if n_dims > 8:
            raise _Corrupt("a tensor has more than 8 dimensions")
        count = 1
        for _ in range(n_dims):
            count *= r.scalar("<Q")
        ttype, offset = r.scalar("<I"), r.scalar("<Q")
        if ttype not in sizes:
            raise _Corrupt(f"unknown tensor type {ttype}")
        block, type_size = sizes[ttype]
        end = max(end, offset + count // block * type_size)
    data_start = -(-r.pos // alignment) * alignment
    name = meta.get("general.name")
    return GGUFInfo(path=path, version=version, architecture=architecture,
                    name=name if isinstance(name, str) else None,
                    tensor_count=n_tensors, data_bytes=data_start + end)


def find_gguf(path: Path, field: str = "model") -> Path | None:
    """The GGUF file a model path names: the file itself, or the one inside a folder.

    None when ``path`` is neither (e.g. a save_pretrained folder). A folder
    with several GGUF files is ambiguous: the error lists them.
    """
    if path.is_file():
        return path if path.suffix.lower() == ".gguf" else None
    if not path.is_dir() or (path / "config.json").is_file():
        return None
    found = sorted(p for p in path.glob("*.gguf") if p.is_file())
    if len(found) > 1:
        names = ", ".join(p.name for p in found[:6])
        raise ConfigError(field, f"{str(path)!r} holds several GGUF files ({names}); pass the path "
                          "of the one to use")
    return found[0] if found else None


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def content_hash(path: Path) -> str:
    key = _stat_key(path)
    if key not in _HASHES:
        _HASHES[key] = _sha256(path)
    return _HASHES[key]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def cache_dir(home: Path, digest: str) -> Path:
    return Path(home) / "models" / f"gguf-v{CACHE_VERSION}-{digest[:32]}"


def is_complete(folder: Path) -> bool:
    """Only a folder whose marker was written before its atomic rename counts as built."""
    return (folder / MARKER).is_file()


def ensure_gguf_model(path: Path | str, home: Path, field: str = "model") -> Path:
    """A plain ``from_pretrained`` folder for a GGUF file, built on first use.

    Safe when several processes ask at once, and after a build was killed: a
    folder without its completion marker is never returned, it is rebuilt.
    """
    from filelock import FileLock

    path = Path(path).resolve()
    digest = content_hash(path)
    dest = cache_dir(home, digest)
    if is_complete(dest):
        return dest
    check_gguf(path, field)  # a bad file fails here, before the lock and the slow load
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        if is_complete(dest):  # another process built it while we waited
            return dest
        prefix = f".build-{dest.name}-"
        for stale in dest.parent.glob(prefix + "*"):  # a killed build's leftovers
            shutil.rmtree(stale, ignore_errors=True)
        if dest.exists():  # half-written by something that did not use the rename
            log.warning("rebuilding %s: it has no completion marker", dest)
            shutil.rmtree(dest)
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=dest.parent))
        try:
            stats = dequantize_to(path, tmp, field)
            stats.update(sha256=digest, version=CACHE_VERSION)
            (tmp / MARKER).write_text(json.dumps(stats, indent=2))
            os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def dequantize_to(path: Path, out_dir: Path, field: str = "model") -> dict[str, Any]:
    """Load the GGUF with transformers, drop its quantizer, save a plain float32 copy."""
    _require_gguf(path, field)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    folder, name = str(path.parent), path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        raise ConfigError(field, f"transformers could not load the GGUF file {str(path)!r} "
                          f"({type(exc).__name__}: {str(exc)[:200]}); use the model's original "
                          "(non-GGUF) folder or Hugging Face id instead") from None
    # The quantizer only marks the model as "loaded from GGUF" (the weights are
    # already plain float32 tensors); without it save_pretrained writes them as is.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = str(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    stats = {
        "source": str(path),
        "sourceBytes": path.stat().st_size,
        "architecture": model.config.model_type,
        "parameters": sum(p.numel() for p in model.parameters()),
        "buildSeconds": round(time.perf_counter() - started, 2),
    }
    log.info("dequantized %s in %.1f s into %s", path, stats["buildSeconds"], out_dir)
    return stats
