"""aded-chat: a terminal chat app for local GGUF models with ADED speculative decoding."""

import os as _os

import platformdirs as _platformdirs

__version__ = "0.1.0"

# Numba's compiled drafter is cached under the user cache dir (a pipx install's
# site-packages may not be writable); this must be set before numba is imported.
_os.environ.setdefault(
    "NUMBA_CACHE_DIR", _os.path.join(_platformdirs.user_cache_dir("aded-chat"), "numba")
)
