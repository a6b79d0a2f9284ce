"""`aded-chat pull` and the model picker's download tab, against a local Hub-shaped
server (tests/fake_hub.py, through HF_ENDPOINT): never the internet."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest
from aded_chat.engine import embedded_model_path, list_models
from app_helpers import make_app, wait_until
from fake_hub import FakeHub

from aded_chat import pull as pull_mod
from aded_chat.pull import PullError, RemoteFile, choose, pull

CLI = [sys.executable, "-m", "aded_chat"]
FAKE = b"GGUF" + bytes(range(256)) * 4000  # not a model: the transfer is what is tested


def cli_pull(spec, hub_url, models_dir):
    env = {**os.environ, "HF_ENDPOINT": hub_url, "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_OFFLINE": "0"}
    return subprocess.run([*CLI, "pull", spec], capture_output=True, text=True, timeout=300,
                          env={**env, "XDG_DATA_HOME": str(models_dir.parent.parent)})


def models_in(folder):
    return sorted(p.name for p in folder.rglob("*.gguf")
                  if not any(part.startswith(".") for part in p.relative_to(folder).parts))


def test_a_quantization_name_chooses_the_file():
    files = [RemoteFile(p, 1, None) for p in (
        "README.md", "m-Q4_K_M.gguf", "m-Q8_0.gguf", "m-IQ4_XS.gguf", "m-f16.gguf")]
    assert choose(files, "o/m", "q8_0").path == "m-Q8_0.gguf"
    assert choose(files, "o/m", "IQ4_XS").path == "m-IQ4_XS.gguf"
    assert choose(files, "o/m", "m-f16.gguf").path == "m-f16.gguf"
    assert choose(files, "o/m", None).path == "m-Q4_K_M.gguf"  # the usual default
    with pytest.raises(PullError, match="no Q5_K_S file; it has: Q4_K_M, Q8_0"):
        choose(files, "o/m", "Q5_K_S")
    with pytest.raises(PullError, match="has no GGUF file"):
        choose(files[:1], "o/m", None)


def test_pull_fetches_checks_and_places_the_file(tmp_path):
    models = tmp_path / "aded-chat" / "models"
    repos = {"me/tiny-GGUF": {"tiny-Q4_K_M.gguf": FAKE, "tiny-Q8_0.gguf": FAKE[:5000]},
             "me/docs": {"README.md": b"no models here"}}
    with FakeHub(repos) as hub:
        r = cli_pull("me/tiny-GGUF:Q4_K_M", hub.url, models)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == str(models / "tiny-Q4_K_M.gguf")
        assert (models / "tiny-Q4_K_M.gguf").read_bytes() == FAKE
        assert not (models / ".partial" / "me--tiny-GGUF").exists()
        r = cli_pull("me/tiny-GGUF:Q4_K_M", hub.url, models)  # again: nothing to fetch
        assert r.returncode == 0 and "already in" in r.stderr

        for spec, needle in (("me/nothing", "no repository me/nothing"),
                             ("me/docs", "has no GGUF file"),
                             ("me/tiny-GGUF:Q2_K", "no Q2_K file"),
                             ("not a repo", "is not a Hub repository")):
            r = cli_pull(spec, hub.url, models)
            assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
            assert needle in r.stderr and "Traceback" not in r.stderr

        hub.bad_sha.add("tiny-Q8_0.gguf")
        r = cli_pull("me/tiny-GGUF:Q8_0", hub.url, models)
        assert r.returncode == 2 and "checksum" in r.stderr
        assert models_in(models) == ["tiny-Q4_K_M.gguf"]  # nothing half-written as a model
    r = cli_pull("me/tiny-GGUF", "http://127.0.0.1:9", models)  # nothing listens there
    assert r.returncode == 2 and "cannot reach the Hub" in r.stderr


def test_a_broken_transfer_is_retried_or_resumed_by_running_again(tmp_path, monkeypatch):
    with FakeHub({"me/tiny-GGUF": {"tiny-Q4_K_M.gguf": FAKE}}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        hub.cut_after = 300_000  # the transfer breaks off once: the client tries again
        assert pull("me/tiny-GGUF", tmp_path).read_bytes() == FAKE
        (tmp_path / "tiny-Q4_K_M.gguf").unlink()
        hub.cut_after, hub.cut_always = 300_000, True  # it keeps breaking off
        with pytest.raises(PullError, match="run the same command again to resume"):
            pull("me/tiny-GGUF", tmp_path)
        assert models_in(tmp_path) == []  # the piece stays hidden, not a model
        hub.cut_after, hub.cut_always = None, False
        assert pull("me/tiny-GGUF", tmp_path).read_bytes() == FAKE


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    with FakeHub({"me/tiny-GGUF": {"tiny-Q4_K_M.gguf": FAKE}}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        usage = pull_mod.shutil.disk_usage(tmp_path)
        monkeypatch.setattr(pull_mod.shutil, "disk_usage",
                            lambda p: usage._replace(free=1000))
        with pytest.raises(PullError, match="not enough disk space"):
            pull("me/tiny-GGUF", tmp_path)
        monkeypatch.undo()
        monkeypatch.setenv("HF_ENDPOINT", hub.url)

        def full(*a, **kw):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(pull_mod, "_download", full)
        with pytest.raises(PullError, match="disk filled up"):
            pull("me/tiny-GGUF", tmp_path)
        assert models_in(tmp_path) == [] and not (tmp_path / ".partial" / "me--tiny-GGUF").exists()


@pytest.mark.model
async def test_the_picker_downloads_a_model_and_the_app_loads_it(tmp_path, monkeypatch, session):
    """The real embedded model, served by the local Hub, downloaded from the picker's tab
    and loaded: the app then answers with it."""
    from textual.widgets import Input, TabbedContent

    from aded_chat.screens.models import ModelPickerScreen

    weights = embedded_model_path().read_bytes()
    with FakeHub({"HuggingFaceTB/SmolLM2-135M-Instruct-GGUF":
                  {"smollm2-135m-instruct-q4_1.gguf": weights}}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        app = make_app(tmp_path / "c.db", session)
        app.cfg = app.cfg.__class__(**{**app.cfg.__dict__, "models_dir": str(tmp_path / "m")})
        async with app.run_test() as pilot:
            await pilot.press("ctrl+o")
            await wait_until(pilot, lambda: isinstance(app.screen, ModelPickerScreen))
            app.screen.query_one(TabbedContent).active = "tab-2"
            await pilot.pause(0.1)
            box = app.screen.query_one("#pull", Input)
            box.focus()
            box.value = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:Q4_1"
            await pilot.press("enter")
            await wait_until(pilot, lambda: app.session is not session, timeout=300)
            assert app.session.info.model_path.endswith("smollm2-135m-instruct-q4_1.gguf")
            assert [e.name for e in list_models(tmp_path / "m")][-1] == \
                "smollm2-135m-instruct-q4_1"
        app.session.close()
