"""Test isolation: the user's config and conversations are never touched by tests."""

import os
import tempfile

_home = tempfile.mkdtemp(prefix="aded-chat-test-")
os.environ["XDG_CONFIG_HOME"] = os.path.join(_home, "config")
os.environ["XDG_DATA_HOME"] = os.path.join(_home, "data")
