"""The ADED drafter: tri-gram tables, copy lookup, tree search, calibration and costs.

Numba caches the drafter's compiled code on disk; a pipx install's site-packages may not
be writable, so the cache goes under the user cache folder. This has to be set before
Numba is first imported, and every drafter module is imported through this package.

The folder is named by the drafter's source: Numba checks a cached function against its
own file only, so a kernel cached with a helper from another module (mcts_draft with
lookup.copy_chain) would keep the old helper after an upgrade changed it. A new source
gets a fresh folder, and the folders of earlier sources are removed.
"""

import hashlib as _hashlib
import os as _os
import shutil as _shutil
from pathlib import Path as _Path

import platformdirs as _platformdirs


def source_digest(folder: _Path) -> str:
    """A short digest of the Python files in folder (names and contents)."""
    h = _hashlib.sha256()
    for f in sorted(folder.glob("*.py")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _numba_cache_dir() -> str:
    root = _Path(_platformdirs.user_cache_dir("aded-chat")) / "numba"
    here = root / source_digest(_Path(__file__).parent)
    if not here.exists() and root.is_dir():
        for old in root.iterdir():  # earlier sources' code
            if old.name != here.name:
                _shutil.rmtree(old, ignore_errors=True)
    return str(here)


if "NUMBA_CACHE_DIR" not in _os.environ:
    _os.environ["NUMBA_CACHE_DIR"] = _numba_cache_dir()
