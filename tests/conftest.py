"""Test isolation: the user's config, conversations and caches are never touched."""

import atexit
import os
import shutil
import tempfile

_home = tempfile.mkdtemp(prefix="aded-chat-test-")
atexit.register(shutil.rmtree, _home, ignore_errors=True)  # ~10 MB of caches a run
os.environ["XDG_CONFIG_HOME"] = os.path.join(_home, "config")
os.environ["XDG_DATA_HOME"] = os.path.join(_home, "data")
os.environ["XDG_CACHE_HOME"] = os.path.join(_home, "cache")


import pytest  # noqa: E402 (the environment above must be set before anything imports)


@pytest.fixture(scope="module")
def session():
    """The embedded model with its drafter, as the app opens it (one per test module)."""
    from app_helpers import CFG

    from aded_chat.runtime import open_model

    s = open_model(CFG)
    yield s
    s.close()
