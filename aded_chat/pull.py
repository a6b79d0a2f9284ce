"""`aded-chat pull REPO[:QUANT]`: a GGUF from the Hugging Face Hub into the models folder.

huggingface_hub does the transfer (resume, retries, HF_ENDPOINT, tokens). Here: which
file a quantization name means, room on the disk, the SHA-256 the Hub lists for the
file, and that nothing half-written is ever left where models are looked for: the file
is downloaded under `<models>/.partial/` (kept there to resume) and moved into the
folder only once its checksum matches.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

PARTIAL_DIR = ".partial"  # hidden: list_models never looks inside it
SPACE_MARGIN = 64 << 20  # bytes left free beyond the file, for the database and caches
# When a repository holds several quantizations and none was named: the usual default
# of GGUF repositories, then the exact ones.
PREFERRED_QUANTS = ("Q4_K_M", "Q8_0", "Q4_0", "Q5_K_M", "Q6_K", "F16")
_QUANT = re.compile(r"(?<![A-Za-z0-9])(I?Q\d[A-Za-z0-9_]*|F16|F32|BF16)(?![A-Za-z0-9])",
                    re.I)


class PullError(Exception):
    """The model could not be fetched; the message is one sentence that says why."""


@dataclass(frozen=True)
class RemoteFile:
    path: str  # in the repository
    size: int
    sha256: str | None  # the LFS object id the Hub lists; None when it lists none


def parse_spec(spec: str) -> tuple[str, str | None]:
    """'owner/name' or 'owner/name:QUANT' (a file name works as QUANT too)."""
    repo, _, quant = spec.strip().partition(":")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        raise PullError(f"{spec!r} is not a Hub repository: write OWNER/NAME, optionally "
                        f"with :QUANT (e.g. bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M)")
    return repo, quant.strip() or None


def quant_of(path: str) -> str | None:
    m = _QUANT.search(Path(path).stem)
    return m.group(1).upper() if m else None


def choose(files: list[RemoteFile], repo: str, quant: str | None) -> RemoteFile:
    """The GGUF file a quantization name (or a file name) means in this repository."""
    ggufs = [f for f in files if f.path.lower().endswith(".gguf")]
    if not ggufs:
        raise PullError(f"{repo} has no GGUF file")
    if quant:
        exact = [f for f in ggufs if Path(f.path).name == quant]
        by_quant = [f for f in ggufs if quant_of(f.path) == quant.upper()]
        found = exact or by_quant
        if not found:
            raise PullError(f"{repo} has no {quant} file; it has: {_quants(ggufs)}")
        if len(found) > 1:
            raise PullError(f"{repo} has several {quant} files "
                            f"({', '.join(f.path for f in found)}): name one after the colon")
        return found[0]
    if len(ggufs) == 1:
        return ggufs[0]
    for q in PREFERRED_QUANTS:
        found = [f for f in ggufs if quant_of(f.path) == q]
        if len(found) == 1:
            return found[0]
    raise PullError(f"{repo} has several GGUF files; choose one with {repo}:QUANT "
                    f"({_quants(ggufs)})")


def _quants(files: list[RemoteFile]) -> str:
    return ", ".join(quant_of(f.path) or Path(f.path).name for f in files)


def _explain(exc: BaseException, repo: str) -> str:
    """One sentence for whatever the Hub client raised."""
    from huggingface_hub import errors

    if isinstance(exc, errors.GatedRepoError):
        return f"{repo} is gated: accept its terms on the Hub and log in (hf auth login)"
    if isinstance(exc, errors.RepositoryNotFoundError):
        return f"no repository {repo} on the Hub (or it is private: log in with hf auth login)"
    if isinstance(exc, errors.RevisionNotFoundError | errors.EntryNotFoundError):
        return f"{repo} has no such file or revision"
    if isinstance(exc, errors.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        return f"the Hub answered HTTP {status} for {repo}"
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "the disk filled up during the download"
    return f"cannot reach the Hub at {endpoint()} ({type(exc).__name__}); check the network"


def endpoint() -> str:
    """The Hub's address, read when asked (huggingface_hub reads it once, at import)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def check_reachable(timeout: float = 5.0) -> None:
    """Fail in one line, at once, where there is no route to the Hub (the client would
    retry for half a minute first)."""
    url = urlparse(endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as exc:
        raise PullError(f"cannot reach the Hub at {endpoint()} "
                        f"({exc.strerror or type(exc).__name__}); check the network or "
                        f"HF_ENDPOINT") from None


def list_files(repo: str) -> list[RemoteFile]:
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    try:
        entries = list(HfApi(endpoint=endpoint()).list_repo_tree(repo, recursive=True))
    except Exception as exc:  # the client's errors, httpx's, OSError: one sentence each
        raise PullError(_explain(exc, repo)) from None
    return [RemoteFile(e.path, e.size, e.lfs.sha256 if e.lfs else None)
            for e in entries if isinstance(e, RepoFile)]


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def pull(spec: str, models_dir: Path,
         progress: Callable[[int, int], None] | None = None,
         say: Callable[[str], None] = lambda _: None) -> Path:
    """Fetch the GGUF that spec names into models_dir; its final path. progress(done,
    total) hears of the transfer (None: huggingface_hub's own bar on stderr)."""
    repo, quant = parse_spec(spec)
    check_reachable()
    chosen = choose(list_files(repo), repo, quant)
    name = Path(chosen.path).name
    target = models_dir / name
    if target.exists() and target.stat().st_size == chosen.size and (
            chosen.sha256 is None or sha256_of(target) == chosen.sha256):
        say(f"{name} is already in {models_dir}")
        return target
    partial_dir = models_dir / PARTIAL_DIR / repo.replace("/", "--")
    try:
        partial_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PullError(f"cannot create {partial_dir}: {exc.strerror}") from None
    free = shutil.disk_usage(partial_dir).free
    if free < chosen.size + SPACE_MARGIN:
        raise PullError(f"not enough disk space for {name}: it needs "
                        f"{chosen.size / 1e6:.0f} MB, {free / 1e6:.0f} MB is free in "
                        f"{models_dir}")
    say(f"downloading {repo}/{chosen.path} ({chosen.size / 1e6:.0f} MB)")
    try:
        got = Path(_download(repo, chosen.path, partial_dir, progress))
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            shutil.rmtree(partial_dir, ignore_errors=True)  # give the space back
        raise PullError(_explain(exc, repo) + (
            "; run the same command again to resume" if not (
                isinstance(exc, OSError) and exc.errno == errno.ENOSPC) else "")) from None
    if chosen.sha256 is not None and sha256_of(got) != chosen.sha256:
        shutil.rmtree(partial_dir, ignore_errors=True)
        raise PullError(f"{name} did not match the checksum the Hub lists for it (a damaged "
                        f"transfer): it was removed; run the command again")
    os.replace(got, target)
    shutil.rmtree(partial_dir, ignore_errors=True)
    return target


def _download(repo: str, path: str, into: Path,
              progress: Callable[[int, int], None] | None) -> str:
    from huggingface_hub import hf_hub_download

    kw = {}
    if progress is not None:
        kw["tqdm_class"] = _reporting_bar(progress)
    return hf_hub_download(repo, path, local_dir=into, endpoint=endpoint(), **kw)


def _reporting_bar(progress: Callable[[int, int], None]):
    """A tqdm that reports to a callback instead of drawing (the app draws its own)."""
    from tqdm.auto import tqdm

    class Reporting(tqdm):
        def __init__(self, *a, **kw):
            kw["disable"] = False
            kw["file"] = open(os.devnull, "w")  # noqa: SIM115 (closed with the bar)
            super().__init__(*a, **kw)

        def update(self, n=1):
            out = super().update(n)
            progress(int(self.n), int(self.total or 0))
            return out

        def close(self):
            fh = self.fp
            super().close()
            fh.close()

    return Reporting
