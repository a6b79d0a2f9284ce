"""What the drafter keeps across runs: its learned tri-gram rows, its acceptance
calibration, its trust and its archive of earlier answers, per model, in one file.

A chat client sees the same model day after day, and people ask it similar things
again: a request like one it answered before (regenerated, asked in a new conversation,
or the next day) drafts from that answer at once, copied from the archive (the bench's
prompts asked a second time on this CPU: 1.06x the first time, 1.63x the second). On new
requests one day's answers buy about nothing (BENCHMARKS.md, sessions 16 and 17).

The file is bounded (the table's live rows, at most MAX_LOAD of a table capped at
max_mb; the archive's newest tokens), versioned, written to a temporary name and
renamed, and anything unexpected in it (another version, vocabulary or row width, a
damaged or truncated file) means starting fresh from the corpus prior. A calibration of
another shape (from a version with other kinds of candidates) keeps the file's rows and
starts only the calibration afresh. A file from before the archive loads with none.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from ..llama.models import file_identity

VERSION = 1


def learned_path(folder: Path, model_path: str | os.PathLike) -> Path:
    """The file for this model (by file identity: a changed file starts fresh)."""
    return Path(folder) / f"learned-v{VERSION}-{file_identity(Path(model_path))}.npz"


def save_learned(spec, path: Path) -> None:
    """Write spec's (an AdedSpeculator) learned state to path, atomically."""
    keys, toks, wts = spec.model.live_rows()
    tried, kept = spec.accept.snapshot()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, version=VERSION, vocab=spec.model.vocab, k=spec.model.k, keys=keys,
                 toks=toks, wts=wts, uni=spec.model.tables.uni, inc=spec.model.inc,
                 tried=tried, kept=kept, trust=np.array(spec.trust_state()),
                 archive=spec.archived())
    os.replace(tmp, path)


def load_learned(spec, path: Path) -> bool:
    """Replace spec's tables with the file's; False (spec untouched) when there is no
    usable file."""
    try:
        with np.load(path) as z:
            if (int(z["version"]) != VERSION or int(z["vocab"]) != spec.model.vocab
                    or int(z["k"]) != spec.model.k):
                return False
            keys, toks, wts, uni = z["keys"], z["toks"], z["wts"], z["uni"]
            inc, tried, kept, trust = float(z["inc"]), z["tried"], z["kept"], z["trust"]
            # (files written before the archive existed have none: it starts empty)
            archive = z["archive"] if "archive" in z.files else np.zeros(0, np.int32)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return False
    shapes_ok = (keys.ndim == 1 and toks.shape == wts.shape == (len(keys), spec.model.k)
                 and uni.shape == spec.model.tables.uni.shape and trust.shape == (2,))
    finite = all(np.isfinite(a).all() for a in (wts, uni, trust))
    archive_ok = (archive.ndim == 1 and archive.dtype.kind == "i"
                  and (len(archive) == 0 or (archive.min() >= -1
                                             and archive.max() < spec.model.vocab)))
    if not (shapes_ok and finite and archive_ok and inc > 0):
        return False
    # A calibration of another shape comes from a drafter with other kinds of candidates
    # (a version that added one): its rows still hold, its calibration starts afresh.
    calib_ok = tried.shape == kept.shape == spec.accept.calib.tried.shape
    if calib_ok and not (np.isfinite(tried).all() and np.isfinite(kept).all()
                         and (tried > 0).all()):
        return False
    spec.model.replace_rows(keys.astype(np.int64), toks.astype(np.int32),
                            wts.astype(np.float32), uni.astype(np.float32), inc)
    if calib_ok:
        spec.accept.restore((tried, kept))
    spec.set_trust_state(float(trust[0]), float(trust[1]))
    spec.archive.set(archive)
    return True
