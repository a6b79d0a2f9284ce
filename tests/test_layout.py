"""The layout keeps its promises: the engine is a library with no UI, the app reaches it
only through its public surface, and the install adds no top-level `engine` package."""

import ast
import subprocess
import sys
from pathlib import Path

import aded_chat.engine as engine

ROOT = Path(__file__).resolve().parents[1]
# The bench's peer is llama-cpp-python's own high-level API, measured as users run it.
LLAMA_CPP_IMPORTERS = {"engine/llama/backend.py", "aded_chat/bench.py"}


def imports(path: Path):
    """(module, names, line) for every import in a file; relative imports keep their dots."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            yield "." * node.level + (node.module or ""), [a.name for a in node.names], \
                node.lineno


def sources(folder: str):
    return sorted((ROOT / folder).rglob("*.py"))


def test_engine_has_no_ui_imports():
    for path in sources("engine"):
        for module, _, line in imports(path):
            assert not module.startswith(("textual", "aded_chat")), (path, line, module)


def test_only_the_backend_imports_llama_cpp():
    for path in sources("engine") + sources("aded_chat"):
        rel = path.relative_to(ROOT).as_posix()
        for module, _, line in imports(path):
            if module.split(".")[0] == "llama_cpp":
                assert rel in LLAMA_CPP_IMPORTERS, (rel, line, module)


def test_the_app_uses_only_the_engines_public_surface():
    public = set(engine.__all__)
    for path in sources("aded_chat"):
        tree = ast.parse(path.read_text())
        for module, names, line in imports(path):
            if module.startswith("aded_chat.engine"):
                assert module == "aded_chat.engine", (path, line, f"imports {module}")
                assert set(names) <= public, (path, line, set(names) - public)
        for node in ast.walk(tree):
            # another object's private part (self's own, and super()'s, are its class's)
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                    and not node.attr.startswith("__"):
                owner = node.value
                mine = isinstance(owner, ast.Name) and owner.id in ("self", "cls")
                mine |= isinstance(owner, ast.Call) and ast.unparse(owner) == "super()"
                assert mine, (path, node.lineno, ast.unparse(node))


def test_every_public_name_is_exported():
    for name in engine.__all__:
        assert hasattr(engine, name), name


def test_the_install_adds_no_top_level_engine_package(tmp_path):
    """Run from a folder outside the checkout, so only the installed packages count."""
    code = ("import importlib.util, aded_chat.engine as e; "
            "print(importlib.util.find_spec('engine') is None, e.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[0] == "True", "a top-level 'engine' package is importable"
    assert Path(out[1]).resolve().parent == (ROOT / "engine").resolve()
