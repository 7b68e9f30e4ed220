"""data/download.py against a local HTTP server (never the real network)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from ncf.errors import NcfError

SCRIPT = Path(__file__).resolve().parents[1] / "data" / "download.py"
_spec = importlib.util.spec_from_file_location("download_script", SCRIPT)
download = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = download  # dataclasses look their module up there
_spec.loader.exec_module(download)

RATINGS_CSV = "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n"


class QuietHandler(SimpleHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def log_message(self, *args) -> None:
        QuietHandler.requests.append(self.path)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, folder it serves)."""
    root = tmp_path / "served"
    root.mkdir()
    QuietHandler.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


def make_zip(path: Path, top: str, files: dict[str, str]) -> str:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(f"{top}/{name}" if top else name, text)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_download_extracts_records_checksums_and_caches(server, tmp_path: Path, capsys) -> None:
    base, served = server
    archive_sha = make_zip(served / "ml-latest-small.zip", "ml-latest-small", {"ratings.csv": RATINGS_CSV})
    dest = tmp_path / "raw"
    target = download.download("ml-latest-small", dest, base)
    assert target == dest / "ml-latest-small"
    assert (target / "ratings.csv").read_text() == RATINGS_CSV  # the archive's top folder is dropped
    meta = json.loads((target / "meta.json").read_text())
    assert meta["archive_sha256"] == archive_sha
    assert meta["files"]["ratings.csv"]["sha256"] == hashlib.sha256(RATINGS_CSV.encode()).hexdigest()
    out = capsys.readouterr().out
    assert "downloading" in out and "100%" in out
    assert [p.name for p in dest.iterdir()] == ["ml-latest-small"]  # no temporary files left

    (served / "ml-latest-small.zip").unlink()
    requests = len(QuietHandler.requests)
    download.download("ml-latest-small", dest, base)
    assert "already in" in capsys.readouterr().out
    assert len(QuietHandler.requests) == requests


def test_a_changed_archive_is_refused_after_the_first_download(server, tmp_path: Path) -> None:
    base, served = server
    make_zip(served / "ml-1m.zip", "ml-1m", {"ratings.dat": "1::1::5::1\n"})
    target = download.download("ml-1m", tmp_path, base)
    (target / "ratings.dat").unlink()  # incomplete: the next run downloads again
    make_zip(served / "ml-1m.zip", "ml-1m", {"ratings.dat": "1::1::4::1\n"})
    with pytest.raises(NcfError, match=r"differs from .* recorded .* at the first download"):
        download.download("ml-1m", tmp_path, base)


def test_ml_100k_files_must_match_the_embedded_checksums(server, tmp_path: Path, monkeypatch) -> None:
    base, served = server
    files = {name: f"not the real {name}\n" for name in download.DATASETS["ml-100k"].sha256}
    make_zip(served / "ml-100k.zip", "ml-100k", files)
    with pytest.raises(NcfError, match=r"README has SHA-256 \w+, expected 4883b8cf"):
        download.download("ml-100k", tmp_path, base)
    assert list(tmp_path.iterdir()) == [served]

    known = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in files.items()}
    monkeypatch.setitem(download.DATASETS, "ml-100k", download.Dataset("u.data", known))
    target = download.download("ml-100k", tmp_path / "raw", base)
    assert sorted(p.name for p in target.iterdir()) == sorted([*files, "meta.json"])


def test_offline_message_suggests_the_local_copy(tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{unused_port()}"
    with pytest.raises(NcfError, match="network unreachable") as raised:
        download.download("ml-100k", tmp_path, base, timeout=5)
    assert "--base-url=file://" in str(raised.value)
    assert "../shared" not in str(raised.value)  # a developer machine's path means nothing to a user
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--dataset", "ml-25m", "--dest", str(tmp_path), "--base-url", base],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: cannot download")
    assert "Traceback" not in result.stderr


def test_http_error_and_unsafe_archive(server, tmp_path: Path) -> None:
    base, served = server
    with pytest.raises(NcfError, match="HTTP 404"):
        download.download("ml-20m", tmp_path, base)
    make_zip(served / "ml-20m.zip", "", {"../evil.csv": "x", "ratings.csv": RATINGS_CSV})
    with pytest.raises(NcfError, match="paths outside its folder"):
        download.download("ml-20m", tmp_path, base)
    assert not (tmp_path / "evil.csv").exists()


def test_a_copied_archive_installs_offline_from_a_file_url(tmp_path: Path, monkeypatch) -> None:
    """What the offline message suggests works: the archive from a folder, checksums checked as usual."""
    folder = tmp_path / "copied"
    folder.mkdir()
    files = {name: f"copy of {name}\n" for name in download.DATASETS["ml-100k"].sha256}
    make_zip(folder / "ml-100k.zip", "ml-100k", files)
    with pytest.raises(NcfError, match="expected 4883b8cf"):  # the published checksums still apply
        download.download("ml-100k", tmp_path / "raw", folder.as_uri())
    known = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in files.items()}
    monkeypatch.setitem(download.DATASETS, "ml-100k", download.Dataset("u.data", known))
    target = download.download("ml-100k", tmp_path / "raw", folder.as_uri())
    assert json.loads((target / "meta.json").read_text())["url"] == f"{folder.as_uri()}/ml-100k.zip"
