"""Download a MovieLens dataset from GroupLens into DEST/<name>/ (stdlib, plus ncf from the project venv).

    python data/download.py --dataset ml-100k --dest data/raw       (what `make data DATASET=...` runs)

The archive's files land directly in DEST/<name>/ (its top folder is dropped, so DEST/ml-10m/ratings.dat
even though GroupLens zips ml-10m as ml-10M100K/), next to a meta.json recording the URL, the archive's
SHA-256 and every extracted file's size and SHA-256. `training/prepare.py --input DEST/<name>` reads it.

Checksums: the files of ml-100k must match the SHA-256s embedded below. GroupLens publishes none for the
other archives, so their archive SHA-256 is trusted on first use: a later download of the same dataset
must match the one recorded in meta.json. A dataset already present and complete is not downloaded again
(delete its folder to force it).

GroupLens' licenses allow research use but forbid redistribution: never commit these files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ncf.checksums import sha256_file
from ncf.errors import NcfError

BASE_URL = "https://files.grouplens.org/datasets/movielens"
META_FILE = "meta.json"
OFFLINE_HINT = (
    "without network, copy <dataset>.zip from a machine that has it into a folder and install it from there "
    "(checksums still checked): make data DOWNLOAD_ARGS=--base-url=file:///path/to/that/folder; "
    "or train on an unpacked copy: make train-local DATA_DIR=<folder with its ratings file>; "
    "or on the embedded data: make train-local"
)


@dataclass(frozen=True)
class Dataset:
    ratings: str  # the ratings file training/prepare.py reads
    sha256: dict[str, str] = field(default_factory=dict)  # known checksums of extracted files


DATASETS = {
    "ml-100k": Dataset(
        "u.data",
        {
            "README": "4883b8cf340ed0059971b33f56ad3adc88a40792108ebca3d24aafc4c82e8b52",
            "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
            "u.genre": "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb",
            "u.info": "5b0a40b2e47a729ee6203063f6dcf8790c2e63f5a18663e6ee318a72c5f3c27b",
            "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
            "u.occupation": "cd5fbec9afe345d993a62fc7817df1a4a9079c4feb267b3118763b8fd942137d",
            "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
        },
    ),
    "ml-1m": Dataset("ratings.dat"),
    "ml-10m": Dataset("ratings.dat"),
    "ml-20m": Dataset("ratings.csv"),
    "ml-25m": Dataset("ratings.csv"),
    "ml-latest-small": Dataset("ratings.csv"),
}


def read_meta(folder: Path) -> dict | None:
    try:
        return json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_complete(folder: Path, dataset: Dataset) -> bool:
    """Whether `folder` holds a finished download: meta.json, every recorded file at its recorded size,
    and the known checksums matching."""
    meta = read_meta(folder)
    if not meta or not isinstance(meta.get("files"), dict) or dataset.ratings not in meta["files"]:
        return False
    for name, recorded in meta["files"].items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != recorded.get("bytes"):
            return False
    return all((folder / n).is_file() and sha256_file(folder / n) == s for n, s in dataset.sha256.items())


def download(name: str, dest: Path, base_url: str = BASE_URL, timeout: float = 30.0) -> Path:
    """Make DEST/<name> hold the dataset (downloading it unless already there); return that folder."""
    dataset = DATASETS[name]
    target = dest / name
    if is_complete(target, dataset):
        print(f"{name}: already in {target} (checksums fine); delete the folder to download it again")
        return target
    recorded = (read_meta(target) or {}).get("archive_sha256")
    dest.mkdir(parents=True, exist_ok=True)
    url = f"{base_url.rstrip('/')}/{name}.zip"
    with tempfile.TemporaryDirectory(prefix=f".{name}.tmp-", dir=dest) as scratch:
        archive = Path(scratch) / f"{name}.zip"
        archive_sha256 = fetch(url, archive, timeout)
        if recorded and recorded != archive_sha256:
            raise NcfError(
                f"{url}: SHA-256 {archive_sha256} differs from {recorded} recorded in {target / META_FILE} "
                f"at the first download (corrupt download, or the file changed on the server); delete "
                f"{target} to accept the new archive"
            )
        staging = Path(scratch) / name
        files = extract(archive, staging)
        check_files(staging, dataset, files, url)
        meta = {
            "dataset": name,
            "url": url,
            "archive_sha256": archive_sha256,
            "archive_bytes": archive.stat().st_size,
            "downloaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": {
                f: {"bytes": (staging / f).stat().st_size, "sha256": sha256_file(staging / f)} for f in files
            },
        }
        (staging / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    print(f"{name}: {len(files)} files in {target}; train with: make train-local DATA_DIR={target}")
    return target


def fetch(url: str, path: Path, timeout: float) -> str:
    """Stream `url` into `path` with progress lines; return the SHA-256 of what was received."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, path.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            received, shown = 0, -1
            print(f"downloading {url}" + (f" ({total / 1e6:.1f} MB)" if total else ""), flush=True)
            while block := response.read(1 << 20):
                out.write(block)
                digest.update(block)
                received += len(block)
                step = received * 10 // total if total else received // (10 << 20)
                if step != shown:  # a line per 10 % (per 10 MB when the size is unknown)
                    shown = step
                    print(f"  {_progress(received, total)}", flush=True)
    except urllib.error.HTTPError as error:
        raise NcfError(f"{url}: the server answered HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise NcfError(f"cannot download {url}: network unreachable ({reason}); {OFFLINE_HINT}") from None
    if total and received != total:
        raise NcfError(f"{url}: download cut short ({received} of {total} bytes); try again")
    return digest.hexdigest()


def _progress(received: int, total: int) -> str:
    if not total:
        return f"{received / 1e6:.1f} MB"
    return f"{received / 1e6:.1f} / {total / 1e6:.1f} MB ({received * 100 // total}%)"


def extract(archive: Path, folder: Path) -> list[str]:
    """Unpack `archive` into `folder`, dropping the top folder all members share; return the file names."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = [m for m in zipped.infolist() if not m.is_dir()]
            paths = [PurePosixPath(m.filename) for m in members]
            if any(p.is_absolute() or ".." in p.parts for p in paths):
                raise NcfError(f"{archive.name}: refusing an archive with paths outside its folder")
            tops = {p.parts[0] for p in paths if len(p.parts) > 1}
            strip = len(tops) == 1 and all(len(p.parts) > 1 for p in paths)
            names = []
            for member, path in zip(members, paths, strict=True):
                relative = PurePosixPath(*path.parts[1:]) if strip else path
                out = folder / relative
                out.parent.mkdir(parents=True, exist_ok=True)
                with zipped.open(member) as source, out.open("wb") as sink:
                    shutil.copyfileobj(source, sink)
                names.append(relative.as_posix())
    except zipfile.BadZipFile as error:
        raise NcfError(f"{archive.name}: not a valid zip archive ({error})") from None
    return sorted(names)


def check_files(folder: Path, dataset: Dataset, files: list[str], url: str) -> None:
    if dataset.ratings not in files:
        raise NcfError(f"{url}: the archive has no {dataset.ratings} (files: {', '.join(files[:10])})")
    for name, expected in dataset.sha256.items():
        if name not in files:
            raise NcfError(f"{url}: the archive lacks {name}")
        actual = sha256_file(folder / name)
        if actual != expected:
            raise NcfError(f"{url}: {name} has SHA-256 {actual}, expected {expected}: corrupt or altered")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Download a MovieLens dataset from GroupLens.")
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS), help="which dataset")
    parser.add_argument("--dest", type=Path, default=Path("data/raw"), help="folder to put DATASET/ in")
    parser.add_argument("--base-url", default=BASE_URL, help="where the <dataset>.zip files are (a mirror)")
    parser.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds")
    args = parser.parse_args(argv)
    try:
        download(args.dataset, args.dest, args.base_url, args.timeout)
    except NcfError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; nothing was changed", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
