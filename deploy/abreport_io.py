"""The I/O edges of `ab-report`: capture files and the interactions file, each a local path or in S3.

- Capture: a local folder or an S3 prefix; every `*.jsonl` below it is read (the layout
  `<endpoint>/<variant>/yyyy/mm/dd/hh/<file>.jsonl` names each file's variant). Default: the endpoint's
  capture destination, `s3://<bucket>/<prefix>/data-capture/<endpoint>/`, where `deploy --data-capture`
  points SageMaker.
- Interactions: the project's input format (`user_id,item_id,timestamp`, read by prepare.py's reader);
  a timestamp column is required, since "after the request" needs one. An S3 file is downloaded first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from ncf.data.interactions import load_interactions
from ncf.errors import NcfError

from deploy import abtest
from deploy.abtest import Comparison, VariantReport
from deploy.aws import split_s3_uri
from deploy.capture import Served, parse_record, variant_of

History = dict[str, list[tuple[int, str]]]


@dataclass(frozen=True)
class InteractionLog:
    """Each user's interactions as (timestamp, item), sorted, and the catalog (every item seen)."""

    history: History
    catalog_size: int


def load_served(source: str, s3_client: Any) -> list[Served]:
    """Every captured answer under `source` (a local folder or s3://bucket/prefix)."""
    served: list[Served] = []
    files = 0
    for where, text in _capture_files(source, s3_client):
        files += 1
        variant = variant_of(where)
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                served.extend(parse_record(line, variant, f"{where}: line {number}"))
    if not files:
        raise NcfError(f"no data capture files (*.jsonl) under {source}")
    return served


def _capture_files(source: str, s3_client: Any) -> Iterator[tuple[str, str]]:
    """(path or URI, text) of every .jsonl file under `source`."""
    if source.startswith("s3://"):
        bucket, prefix = split_s3_uri(source)
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                if entry["Key"].endswith(".jsonl"):
                    body = s3_client.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
                    yield f"s3://{bucket}/{entry['Key']}", body.decode("utf-8")
        return
    folder = Path(source)
    if not folder.is_dir():
        raise NcfError(f"capture folder not found: {source}")
    for path in sorted(folder.rglob("*.jsonl")):
        yield path.as_posix(), path.read_text(encoding="utf-8")


def load_interactions_log(source: str, s3_client: Any) -> InteractionLog:
    """The interactions file at `source` (local or s3://) as per-user sorted histories."""
    if not source.startswith("s3://"):
        return _read_log(Path(source))
    bucket, key = split_s3_uri(source)
    with TemporaryDirectory(prefix="ncf-interactions-") as tmp:
        local = Path(tmp) / Path(key).name
        s3_client.download_file(bucket, key, str(local))
        return _read_log(local)


def _read_log(path: Path) -> InteractionLog:
    loaded = load_interactions(path)
    if loaded.time_order != "timestamp":
        raise NcfError(
            f"{path}: no timestamp column; ab-report pairs each request with the interactions after it"
        )
    frame = loaded.frame.sort_values(["user_id", "timestamp"], kind="stable")
    history: History = defaultdict(list)
    for user, item, timestamp in zip(frame["user_id"], frame["item_id"], frame["timestamp"], strict=True):
        history[user].append((int(timestamp), item))
    return InteractionLog(dict(history), int(frame["item_id"].nunique()))


def run(
    capture: str, interactions: str, s3_client: Any, *, k: int, window_days: float, resamples: int
) -> tuple[list[VariantReport], list[Comparison]]:
    """Read both inputs, join them and report per variant (see deploy/abtest.py)."""
    if k < 1:
        raise NcfError(f"--k must be at least 1, got {k}")
    if not window_days > 0:
        raise NcfError(f"--window-days must be positive, got {window_days}")
    if resamples < 1:
        raise NcfError(f"--resamples must be at least 1, got {resamples}")
    served = load_served(capture, s3_client)
    log = load_interactions_log(interactions, s3_client)
    outcomes = abtest.join(served, log.history, k, timedelta(days=window_days))
    variants = abtest.report(outcomes, log.catalog_size, resamples=resamples)
    return variants, abtest.compare(variants)
