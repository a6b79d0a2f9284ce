"""A local HTTP server shaped like the Hugging Face Hub, for `aded-chat pull` tests
(HF_ENDPOINT points at it): the repository tree API, HEAD and ranged GET on resolve
URLs, and the Hub's error headers. Never the internet."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self, repos: dict[str, dict[str, bytes]]):
        """repos: 'owner/name' -> {path in repo: file bytes}."""
        self.repos = repos
        self.bad_sha: set[str] = set()  # paths whose listed checksum is wrong
        self.cut_after: int | None = None  # stop the next GET body after this many bytes
        self.cut_always = False  # ... and every one after it
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_HEAD(self):
                hub._serve(self, body=False)

            def do_GET(self):
                hub._serve(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _error(self, h, status: int, code: str) -> None:
        h.send_response(status)
        h.send_header("X-Error-Code", code)
        h.send_header("Content-Type", "application/json")
        body = json.dumps({"error": code}).encode()
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command == "GET":
            h.wfile.write(body)

    def _serve(self, h, body: bool) -> None:
        path = unquote(urlparse(h.path).path)
        rng = h.headers.get("Range")
        self.requests.append(f"{h.command} {path}" + (f" {rng}" if rng else ""))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and "tree" in parts:
            i = parts.index("tree")
            return self._tree(h, "/".join(parts[2:i]))
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._file(h, "/".join(parts[:2]), "/".join(parts[4:]), body)
        return self._error(h, 404, "RepoNotFound")

    def _tree(self, h, repo: str) -> None:
        files = self.repos.get(repo)
        if files is None:
            return self._error(h, 404, "RepoNotFound")
        listing = []
        for p, data in files.items():
            sha = hashlib.sha256(data).hexdigest()
            if p in self.bad_sha:
                sha = "0" * 64
            listing.append({"type": "file", "path": p, "size": len(data),
                            "oid": hashlib.sha1(data).hexdigest(),
                            "lfs": {"oid": sha, "size": len(data), "pointerSize": 134}})
        out = json.dumps(listing).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(out)))
        h.end_headers()
        h.wfile.write(out)

    def _file(self, h, repo: str, path: str, body: bool) -> None:
        files = self.repos.get(repo)
        if files is None:
            return self._error(h, 404, "RepoNotFound")
        if path not in files:
            return self._error(h, 404, "EntryNotFound")
        data = files[path]
        start = 0
        rng = h.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
        chunk = data[start:]
        h.send_response(206 if start else 200)
        h.send_header("X-Repo-Commit", COMMIT)
        h.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        h.send_header("X-Linked-Size", str(len(data)))
        h.send_header("Content-Length", str(len(chunk)))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.send_header("Accept-Ranges", "bytes")
        h.end_headers()
        if body:
            if self.cut_after is not None:
                cut = self.cut_after
                if not self.cut_always:
                    self.cut_after = None
                h.wfile.write(chunk[:cut])
                h.wfile.flush()
                h.close_connection = True
                return
            h.wfile.write(chunk)
