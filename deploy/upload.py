"""`upload`: mirror the prepared channels to s3://<bucket>/<prefix>/data/<dataset>/.

Each object carries the SHA-256 of its content as metadata; a file whose remote copy has the same
digest is skipped, and remote files that no longer exist locally are removed, so the S3 copy is
exactly the local one (a stale shard would otherwise be read by the next training job).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from ncf.checksums import sha256_file
from ncf.errors import NcfError

from deploy.aws import ensure_bucket, is_not_found, split_s3_uri
from deploy.config import Settings

LOG = logging.getLogger("deploy")
CHANNELS = ("train", "validation", "test")
# Jobs get these only when they were uploaded: item features (prepare.py --item-features), and every id
# with the items' training counts (prepare.py writes it; a sharded train channel needs it).
OPTIONAL_CHANNELS = ("items", "vocabulary")
DIGEST_KEY = "sha256"


@dataclass(frozen=True)
class UploadReport:
    """What `upload` did, and where the data now lives."""

    destination: str
    uploaded: tuple[str, ...]
    unchanged: tuple[str, ...]
    removed: tuple[str, ...]


def prepared_files(prepared: Path) -> dict[str, Path]:
    """Relative posix path -> file for every file of a prepared dataset, after checking its channels."""
    if not prepared.is_dir():
        raise NcfError(f"prepared data folder {prepared} does not exist (run `make prepare` first)")
    for channel in CHANNELS:
        folder = prepared / channel
        if not folder.is_dir() or not any(p.is_file() for p in folder.iterdir()):
            raise NcfError(f"{folder} is missing or empty: {prepared} is not a prepared dataset")
    return {
        path.relative_to(prepared).as_posix(): path
        for path in sorted(prepared.rglob("*"))
        if path.is_file() and not path.name.startswith(".")
    }


def upload(settings: Settings, s3_client: Any, prepared: Path) -> UploadReport:
    """Upload changed files, skip unchanged ones, delete remote leftovers under the dataset prefix."""
    files = prepared_files(prepared)
    ensure_bucket(s3_client, settings)
    destination = settings.data_uri()
    bucket, root = split_s3_uri(destination)
    remote = _remote_digests(s3_client, bucket, root)
    uploaded, unchanged = [], []
    for relative, path in files.items():
        digest = sha256_file(path)
        if remote.get(relative) == digest:
            unchanged.append(relative)
            continue
        LOG.info("uploading %s", relative)
        s3_client.upload_file(
            str(path), bucket, root + relative, ExtraArgs={"Metadata": {DIGEST_KEY: digest}}
        )
        uploaded.append(relative)
    stale = sorted(set(remote) - set(files))
    for start in range(0, len(stale), 1000):
        batch = [{"Key": root + relative} for relative in stale[start : start + 1000]]
        s3_client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
    return UploadReport(destination, tuple(uploaded), tuple(unchanged), tuple(stale))


def _remote_digests(s3_client: Any, bucket: str, root: str) -> dict[str, str | None]:
    """Relative key -> stored SHA-256 (None when the object has none) of every object under `root`."""
    digests: dict[str, str | None] = {}
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=root):
        for item in page.get("Contents", []):
            try:
                head = s3_client.head_object(Bucket=bucket, Key=item["Key"])
            except ClientError as exc:
                if is_not_found(exc):  # deleted since the listing
                    continue
                raise
            digests[item["Key"][len(root) :]] = head.get("Metadata", {}).get(DIGEST_KEY)
    return digests
