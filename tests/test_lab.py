"""`make lab`: JupyterLab on the chapters. Started here headless, as the Makefile starts it (its
LAB_OPTS), on a free port of 127.0.0.1 with a token; it must serve a chapter through its contents
API, refuse a request without the token, and stop when told to."""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("jupyterlab", reason="the book extra (jupyterlab) is not installed")

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 120  # seconds for the server to answer (a loaded 2-core machine is slow)


def _lab_opts() -> list[str]:
    makefile = (ROOT / "Makefile").read_text()
    m = re.search(r"^LAB_OPTS\s*:?=\s*(.+)$", makefile, re.M)
    assert m, "LAB_OPTS is not set in the Makefile"
    recipe = re.search(r"^lab:.*\n\t(.+)$", makefile, re.M)
    assert recipe and "jupyter lab $(LAB_OPTS)" in recipe.group(1), "make lab does not use LAB_OPTS"
    return shlex.split(m.group(1))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str | None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture
def lab(tmp_path):
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTER_DATA_DIR=str(tmp_path / "data"),
               IPYTHONDIR=str(tmp_path / "ipython"))
    cmd = [sys.executable, "-m", "jupyterlab", *_lab_opts(), "--no-browser",
           "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", *(["--allow-root"] if os.geteuid() == 0 else [])]
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert proc.poll() is None, (tmp_path / "lab.log").read_text()[-3000:]
            try:
                if _get(f"{base}/api/status", token)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "JupyterLab did not answer in time"
            time.sleep(1)
        yield base, token, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_make_lab_serves_the_chapters_and_stops(lab):
    base, token, proc = lab
    status, body = _get(f"{base}/api/contents/book/attacks.ipynb", token)
    assert status == 200, body[:500]
    chapter = json.loads(body)
    assert chapter["type"] == "notebook" and chapter["path"] == "book/attacks.ipynb"
    first = next(c for c in chapter["content"]["cells"] if c["cell_type"] == "code")
    assert "lslib[book]" in "".join(first["source"])  # the chapter itself, not an empty notebook
    status, body = _get(f"{base}/lab/tree/book", token)
    assert status == 200 and b"JupyterLab" in body
    assert _get(f"{base}/api/contents/book/attacks.ipynb", None)[0] == 403  # the token is needed

    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) is not None
    with pytest.raises(OSError):
        _get(f"{base}/api/status", token)
