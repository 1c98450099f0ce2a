"""Git remotes for tests, on this machine: bare repositories, and an HTTPS server in front of them.

The server is git's own ``http-backend`` behind TLS (a self-signed certificate made with openssl)
and HTTP Basic authentication: a private remote, as GitHub or GitLab would be, with no internet.
"""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from ssl import PROTOCOL_TLS_SERVER, SSLContext
from urllib.parse import urlsplit

__all__ = ["GitHttpsServer", "bare_repository", "git_https_server", "run_git"]


def run_git(*args: str, cwd: Path | None = None, stdin: bytes | None = None) -> str:
    """A plain ``git`` command, as a user would type it; its stdout (AssertionError on failure)."""
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
    env |= {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env |= {"GIT_COMMITTER_EMAIL": "t@t"}
    done = subprocess.run(
        ["git", *args], cwd=cwd, input=stdin, capture_output=True, env=env, check=False
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr.decode()}"
    return done.stdout.decode()


def bare_repository(path: Path, files: dict[str, str], branch: str = "main") -> str:
    """A bare repository at ``path`` with one commit of ``files`` on ``branch``; the commit."""
    work = path.with_name(path.name + ".work")
    run_git("init", "-q", "-b", branch, str(work))
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    run_git("add", "-A", cwd=work)
    run_git("commit", "-qm", "initial", cwd=work)
    run_git("clone", "-q", "--bare", str(work), str(path))
    return run_git("rev-parse", "HEAD", cwd=work).strip()


@dataclass
class GitHttpsServer:
    url: str  # https://127.0.0.1:PORT, its repositories under it by name
    ca_file: Path  # the certificate to trust
    authorizations: list[str] = field(default_factory=list)  # the Authorization headers seen


@contextlib.contextmanager
def git_https_server(root: Path, username: str, token: str) -> Iterator[GitHttpsServer]:
    """Serve the bare repositories under ``root`` over HTTPS, fetch and push, to whoever sends
    ``username:token`` as Basic credentials (401 to anyone else)."""
    certs = root.parent / f"{root.name}-tls"
    certs.mkdir(exist_ok=True)
    key, cert = certs / "key.pem", certs / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    expected = "Basic " + base64.b64encode(f"{username}:{token}".encode()).decode()
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def log_message(self, *args: object) -> None:
            pass

        def _serve(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            parts = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            env = {
                "PATH": os.environ["PATH"],
                "GIT_PROJECT_ROOT": str(root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "REMOTE_USER": username,  # an authenticated user may push
                "REQUEST_METHOD": self.command,
                "PATH_INFO": parts.path,
                "QUERY_STRING": parts.query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "GIT_CONFIG_GLOBAL": "/dev/null",
            }
            if protocol := self.headers.get("Git-Protocol"):
                env["GIT_PROTOCOL"] = protocol
            done = subprocess.run(
                ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
            )
            head, _, payload = done.stdout.partition(b"\r\n\r\n")
            headers = [line.split(": ", 1) for line in head.decode().split("\r\n") if line]
            status = next((int(v.split()[0]) for k, v in headers if k == "Status"), 200)
            self.send_response(status)
            for name, value in headers:
                if name != "Status":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = SSLContext(PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield GitHttpsServer(f"https://127.0.0.1:{server.server_port}", cert, seen)
    finally:
        server.shutdown()
        server.server_close()
