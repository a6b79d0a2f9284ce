"""The ADED drafter: tri-gram tables, copy lookup, tree search, calibration and costs.

Numba caches the drafter's compiled code on disk; a pipx install's site-packages may not
be writable, so the cache goes under the user cache folder. This has to be set before
Numba is first imported, and every drafter module is imported through this package.
"""

import os as _os

import platformdirs as _platformdirs

_os.environ.setdefault(
    "NUMBA_CACHE_DIR", _os.path.join(_platformdirs.user_cache_dir("aded-chat"), "numba")
)
