"""A minimal stand-in for the Hub's HTTP API on 127.0.0.1, so the real huggingface_hub client code runs end
to end offline: it answers repo creation, card validation, the pre-upload check and the commit, and records what it got."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub:
    """Records ``created`` repos, ``commits`` (repo id → {path: bytes}), cards sent for ``validated`` YAML
    and the Authorization headers."""

    def __init__(self):
        self.created: list[dict] = []
        self.commits: dict[str, dict[str, bytes]] = {}
        self.authorizations: list[str] = []
        self.validated: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _reply(self, payload: dict, status: int = 200):
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):  # noqa: N802 (http.server's naming)
                hub.authorizations.append(self.headers.get("Authorization", ""))
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.startswith("/api/repos/create"):
                    request = json.loads(body)
                    hub.created.append(request)
                    repo_id = f"{request.get('organization') or 'user'}/{request['name']}"
                    return self._reply({"url": f"{hub.endpoint}/{repo_id}", "name": repo_id})
                if self.path.startswith("/api/validate-yaml"):
                    hub.validated.append(json.loads(body)["content"])
                    return self._reply({"errors": [], "warnings": []})
                parts = self.path.split("?")[0].split("/")
                if "preupload" in parts:
                    files = json.loads(body)["files"]
                    return self._reply(
                        {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
                    )
                if "commit" in parts:
                    repo_id = "/".join(parts[3:5])
                    uploaded = hub.commits.setdefault(repo_id, {})
                    for line in body.decode().splitlines():
                        record = json.loads(line)
                        if record["key"] == "file":
                            uploaded[record["value"]["path"]] = base64.b64decode(record["value"]["content"])
                    return self._reply(
                        {
                            "commitUrl": f"{hub.endpoint}/{repo_id}/commit/abc123",
                            "commitOid": "abc123",
                            "pullRequestUrl": None,
                        }
                    )
                return self._reply({"error": f"unexpected {self.path}"}, status=404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
