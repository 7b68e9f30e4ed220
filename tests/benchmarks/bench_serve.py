"""Serving benchmarks (`make bench-serve`): top-k latency in-process and through the local HTTPS endpoint.

Models are synthetic NeuMF recommenders exported with the training code's own `ncf.serving.export` (random
weights: timing does not depend on what was learned), at the project's default size (32 factors, MLP
64,32,16,8):
1. In-process, ML-1M-sized model (6,040 users, 3,706 items, ~1M seen interactions): top-10 for 1 user
   and for a batch of 100 users, calling the `serving_default` concrete function directly, and for 1 user
   through `inference.py`'s handler with the in-process transport (p50/p99 over `--calls` calls).
   Bars: 1 user p50 < 2 ms, p99 < 5 ms. Also a `history` request (1 known user, 5 events: the NCF
   fold-in's gradient steps, `ncf.serving.foldin`) through `recommend_from_history`, no bar.
2. Through the local HTTPS endpoint (`python -m deploy.local`, a child process) with boto3: p50/p99 for
   1 user (sequential), then throughput with `--clients` concurrent clients over `--requests` requests,
   for both handler transports (in-process and loopback HTTP to the stand-in).
   Bars: p50 < 15 ms, >= 300 requests/s, zero errors. Client and server share the machine's cores.
3. Top-10 latency for 1 user as the catalog grows (`--catalog-sizes`, 1,000 users), with the export's
   default top-k strategy: exhaustive below `retrieval_min_items`, two-stage retrieval above (random
   weights: the overlap of that retrieval is measured on trained models by `bench_retrieval.py`); also the
   5-event `history` request (fold-in) at each size.
4. Batch Transform throughput (users/s through `inference.py` and the SavedModel): the first request
   `MultiRecord` makes of a users file of one short line per user (`{"user_id": "u17", "k": 10}`), as
   many whole lines as fit in `MaxPayloadInMB=6` (tests/batch_transform.py), answered as JSON Lines top-10
   lists; once through the handler in-process, once through the local endpoint's container route
   (`POST /invocations` over HTTPS, what Batch Transform calls), and in-process on a 20,000-line slice per
   `--chunk-sizes` (instances per TF Serving call, `NCF_TFS_CHUNK_SIZE`).
5. The sequence model (`model_type` sasrec, default settings, random weights, ML-1M-sized, `max_len`
   (200) stored items per user): `serving_default` for 1 user in-process, and a `history` request (an
   unknown user with 5 events) through the local HTTPS endpoint, sequential. Bars (issue 11): p50 <= 3 ms
   and <= 10 ms.
   `--parts sasrec --output tests/benchmarks/results/serve-sasrec.json` measures it alone.

Results (with a description of the machine) go to `tests/benchmarks/results/serve.json`.
Run from the repository root: `.venv/bin/python tests/benchmarks/bench_serve.py [--quick]`;
`--parts batch` (or any of latency,https,catalog,batch) measures only those parts and updates their
entries in the existing results file; each part run that way records its own command, machine and date.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "training"), str(REPO / "tests")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import common  # noqa: E402
import numpy as np  # noqa: E402
import requests  # noqa: E402
import tensorflow as tf  # noqa: E402
from batch_transform import JSONLINES, multi_record_payloads, post_to_container  # noqa: E402
from ncf.data.vocab import UserItemSets, Vocabulary  # noqa: E402
from ncf.models.ncf_models import ModelSpec, NcfModel  # noqa: E402
from ncf.serving.export import Recommender, copy_inference_code, save_recommender  # noqa: E402

from deploy.invoke import make_client  # noqa: E402
from deploy.local.container_server import Context, import_inference  # noqa: E402
from deploy.local.inprocess import InProcessAdapter  # noqa: E402
from deploy.local.model_artifact import open_model  # noqa: E402
from deploy.local.process import local_endpoint_process  # noqa: E402
from deploy.local.tfserving_standin import SavedModelServable  # noqa: E402

FACTORS = 32
MLP_LAYERS = (64, 32, 16, 8)
PARTS = ("latency", "https", "catalog", "batch", "sasrec")
BATCH_PAYLOAD_MB = 6
CHUNK_SLICE_USERS = 20_000
BARS = {
    "in_process_p50_ms": 2.0,
    "in_process_p99_ms": 5.0,
    "https_p50_ms": 15.0,
    "https_requests_per_s": 300.0,
}
SASREC_BARS = {"in_process_p50_ms": 3.0, "https_history_p50_ms": 10.0}


# ---------------------------------------------------------------------------------------------- models


def export_synthetic_model(out: Path, num_users: int, num_items: int, mean_seen: int, seed: int = 0) -> Path:
    """A random-weight NeuMF exported like training does (MODEL_DIR/1 + code/); returns MODEL_DIR."""
    rng = np.random.default_rng(seed)
    users = Vocabulary(np.sort(np.array([f"u{i}" for i in range(num_users)], dtype=object)))
    items = Vocabulary(np.sort(np.array([f"i{j}" for j in range(num_items)], dtype=object)))
    counts = rng.integers(max(1, mean_seen // 8), 2 * mean_seen - mean_seen // 8, size=num_users)
    user_index = np.repeat(np.arange(num_users), counts)
    item_index = rng.integers(0, num_items, size=len(user_index))
    seen = UserItemSets.build(user_index, item_index, num_users)
    popularity = rng.dirichlet(np.ones(num_items)).astype(np.float32)
    model = NcfModel(ModelSpec("neumf", num_users, num_items, FACTORS, MLP_LAYERS), seed=seed)
    save_recommender(Recommender(model, users, items, seen, popularity, implicit=True), out)
    copy_inference_code(REPO / "inference", out)
    return out


def export_synthetic_sasrec(out: Path, num_users: int, num_items: int, seed: int = 0) -> Path:
    """A random-weight sasrec (default settings) exported like training does; every user has max_len items."""
    from bench_sasrec import training_data
    from ncf.models.sasrec import build_sasrec
    from ncf.train_settings import TrainConfig

    config = TrainConfig(model_type="sasrec")
    rng = np.random.default_rng(seed)
    user_index = np.repeat(np.arange(num_users, dtype=np.int32), config.max_len)
    item_index = rng.integers(0, num_items, len(user_index)).astype(np.int32)
    recency = np.tile(np.arange(config.max_len, dtype=np.int32)[::-1], num_users)
    data = training_data(user_index, item_index, recency, num_users, num_items)
    model = build_sasrec(config, data)
    save_recommender(Recommender(model, data.users, data.items, data.seen, data.popularity, True), out)
    copy_inference_code(REPO / "inference", out)
    return out


# -------------------------------------------------------------------------------------------- measuring


def latency_ms(call: Callable[[int], Any], calls: int, warmup: int = 20) -> dict[str, float]:
    """p50/p99/mean in milliseconds of `call(i)` over `calls` calls, after `warmup` untimed ones."""
    for i in range(warmup):
        call(i)
    timings = []
    for i in range(calls):
        started = time.perf_counter()
        call(i)
        timings.append((time.perf_counter() - started) * 1000)
    return summarize(timings)


def summarize(timings_ms: list[float]) -> dict[str, float]:
    ordered = sorted(timings_ms)
    return {
        "calls": len(ordered),
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
    }


def user_batches(num_users: int, size: int, count: int) -> list[tf.Tensor]:
    """`count` batches of `size` user ids, built before timing starts."""
    return [tf.constant([f"u{(i * size + j) % num_users}" for j in range(size)]) for i in range(count)]


def top10(recommend: Callable[..., Any], batches: list[tf.Tensor]) -> Callable[[int], Any]:
    """Call `i`: the top-10 signature on batch `i` (cycling), outputs fetched as numpy arrays."""
    k = tf.constant(10, tf.int32)
    return lambda i: {
        name: t.numpy() for name, t in recommend(user_id=batches[i % len(batches)], k=k).items()
    }


REST_URI = "http://localhost:8501/v1/models/model:predict"


def in_process_handler(model_dir: Path) -> tuple[SavedModelServable, Any]:
    """The SavedModel behind the stand-in and `inference.py` calling it in-process at `REST_URI`."""
    artifact = open_model(model_dir)
    servable = SavedModelServable(artifact)
    inference = import_inference(artifact.code_dir / "inference.py")
    inference.SESSION.mount("http://localhost:8501/", InProcessAdapter(servable))
    return servable, inference


def handler_context(body: bytes, content_type: str, accept: str) -> Context:
    """The container's context for one `POST /invocations` of `body`."""
    return Context(None, None, None, REST_URI, None, None, None, content_type, accept, len(body))


def bench_in_process(model_dir: Path, num_users: int, num_items: int, calls: int) -> dict[str, Any]:
    """Direct signature calls (1 user, 100 users) and the full handler in-process (1 user)."""
    servable, inference = in_process_handler(model_dir)
    recommend = servable.signatures["serving_default"]

    def handler(i: int) -> Any:
        body = json.dumps({"user_id": f"u{i % num_users}", "k": 10}).encode()
        return inference.handler(
            io.BytesIO(body), handler_context(body, "application/json", "application/json")
        )

    return {
        "signature_1_user": latency_ms(top10(recommend, user_batches(num_users, 1, 64)), calls),
        "signature_100_users": latency_ms(top10(recommend, user_batches(num_users, 100, 8)), calls, warmup=5),
        "handler_1_user": latency_ms(handler, calls),
        "history_1_user": latency_ms(top10_from_history(servable.signatures, num_users, num_items), calls),
    }


def top10_from_history(signatures: Any, num_users: int, num_items: int) -> Callable[[int], Any]:
    """Call `i`: `recommend_from_history` for one known user with 5 events (the NCF fold-in,
    `ncf.serving.foldin`)."""
    recommend, k = signatures["recommend_from_history"], tf.constant(10, tf.int32)
    requests = [
        (
            tf.constant([f"u{(i * 7) % num_users}"]),
            tf.constant([[f"i{(i * 31 + j) % num_items}" for j in range(5)]]),
        )
        for i in range(64)
    ]
    return lambda i: recommend(user_id=requests[i % 64][0], history=requests[i % 64][1], k=k)[
        "item_ids"
    ].numpy()


def runtime_client(url: str, cert: Path) -> Any:
    return make_client(url, str(cert), "us-east-1", max_attempts=1, max_pool_connections=4)


def bench_https(
    model_dir: Path, transport: str, num_users: int, calls: int, requests: int, clients: int
) -> dict:
    """Sequential 1-user latency and concurrent throughput through the runtime API route, with boto3."""
    with (
        tempfile.TemporaryDirectory() as tls,
        local_endpoint_process(model_dir, Path(tls), "--transport", transport) as ep,
    ):

        def invoke(client: Any, i: int) -> None:
            body = json.dumps({"user_id": f"u{(i * 7919) % num_users}", "k": 10})
            answer = client.invoke_endpoint(EndpointName="bench", Body=body, ContentType="application/json")
            if not json.loads(answer["Body"].read())["predictions"][0]["items"]:
                raise RuntimeError("empty recommendation")

        sequential = runtime_client(ep.url, ep.cert)
        single = latency_ms(lambda i: invoke(sequential, i), calls, warmup=50)

        per_client = -(-requests // clients)
        thread_clients = [runtime_client(ep.url, ep.cert) for _ in range(clients)]
        for client in thread_clients:
            invoke(client, 0)

        def worker(index: int) -> tuple[list[float], int]:
            timings, errors = [], 0
            for i in range(per_client):
                started = time.perf_counter()
                try:
                    invoke(thread_clients[index], index * per_client + i)
                except Exception:
                    errors += 1
                timings.append((time.perf_counter() - started) * 1000)
            return timings, errors

        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            results = list(pool.map(worker, range(clients)))
        elapsed = time.perf_counter() - started
        assert ep.stop() == 0, ep.text()
    timings = [t for result, _ in results for t in result]
    return {
        "transport": transport,
        "single_user": single,
        "concurrent": {
            "clients": clients,
            "requests": len(timings),
            "errors": sum(errors for _, errors in results),
            "seconds": round(elapsed, 3),
            "requests_per_s": round(len(timings) / elapsed, 1),
            "latency": summarize(timings),
        },
    }


def bench_catalog(root: Path, sizes: list[int], calls: int) -> list[dict[str, Any]]:
    """Top-10 latency of one user as the catalog grows (signature called directly)."""
    curve = []
    for size in sizes:
        started = time.perf_counter()
        model_dir = export_synthetic_model(
            root / f"catalog-{size}", num_users=1000, num_items=size, mean_seen=20
        )
        export_s = time.perf_counter() - started
        signatures = tf.saved_model.load(str(model_dir / "1")).signatures
        recommend = signatures["serving_default"]
        count = max(20, calls if size <= 100_000 else calls // 10)
        result = latency_ms(top10(recommend, user_batches(1000, 1, 50)), count, warmup=5)
        history = latency_ms(top10_from_history(signatures, 1000, size), count, warmup=5)
        curve.append(
            {"items": size, "export_seconds": round(export_s, 1), **result, "history_1_user": history}
        )
        print(
            f"  catalog {size:>9,} items: p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms;"
            f" 5-event history p50 {history['p50_ms']:.2f} ms",
            flush=True,
        )
    return curve


def bench_sasrec(root: Path, num_users: int, num_items: int, calls: int) -> dict[str, Any]:
    """serving_default in-process (1 user) and a 5-event history request through the HTTPS endpoint."""
    model_dir = export_synthetic_sasrec(root / "sasrec", num_users, num_items)
    signature = SavedModelServable(open_model(model_dir)).signatures["serving_default"]
    users = [tf.constant([f"u{(i * 7) % num_users:05d}"]) for i in range(64)]  # bench_sasrec's id format
    in_process = latency_ms(top10(signature, users), calls)
    with (
        tempfile.TemporaryDirectory() as tls,
        local_endpoint_process(model_dir, Path(tls), "--transport", "inprocess") as ep,
    ):
        client = runtime_client(ep.url, ep.cert)

        def invoke(i: int) -> None:
            history = [f"i{(i * 31 + j) % num_items:05d}" for j in range(5)]
            body = json.dumps({"user_id": f"new-{i}", "history": history, "k": 10})
            answer = client.invoke_endpoint(EndpointName="bench", Body=body, ContentType="application/json")
            if json.loads(answer["Body"].read())["predictions"][0]["fallback"]:
                raise RuntimeError("a history request fell back to popularity")

        https = latency_ms(invoke, calls, warmup=50)
        assert ep.stop() == 0, ep.text()
    passed = {
        "in_process_1_user_p50_at_most_3ms": in_process["p50_ms"] <= SASREC_BARS["in_process_p50_ms"],
        "https_history_p50_at_most_10ms": https["p50_ms"] <= SASREC_BARS["https_history_p50_ms"],
    }
    return {
        "users": num_users,
        "items": num_items,
        "signature_1_user": in_process,
        "https_history": https,
        "bars": SASREC_BARS,
        "passed": passed,
    }


def batch_payload(num_users: int, max_payload_mb: int) -> bytes:
    """The first request MultiRecord makes of a users file of one short JSON line per user (cycling over
    the model's users): as many whole lines as fit in `max_payload_mb`."""
    lines = max_payload_mb * 1024 * 1024 // 20  # more than one payload holds: lines are >= 28 bytes
    data = "".join(json.dumps({"user_id": f"u{i % num_users}", "k": 10}) + "\n" for i in range(lines))
    return next(multi_record_payloads(data.encode(), max_payload_mb))


def throughput(users: int, seconds: float, answer: bytes | str) -> dict[str, Any]:
    """Users per second for one batch request, after checking it answered every line."""
    lines = answer.count(b"\n" if isinstance(answer, bytes) else "\n")
    if lines != users:
        raise RuntimeError(f"{users} lines sent, {lines} answered")
    return {
        "users": users,
        "seconds": round(seconds, 2),
        "users_per_s": round(users / seconds),
        "response_bytes": len(answer),
    }


def bench_batch(model_dir: Path, num_users: int, chunk_sizes: list[int]) -> dict[str, Any]:
    """One 6 MB MultiRecord JSON Lines request in-process and through HTTPS; chunk sizes on a slice."""
    payload = batch_payload(num_users, BATCH_PAYLOAD_MB)
    users = payload.count(b"\n")
    print(
        f"  one {BATCH_PAYLOAD_MB} MB MultiRecord request: {users:,} users, {len(payload):,} bytes",
        flush=True,
    )
    _, inference = in_process_handler(model_dir)
    context = handler_context(payload, JSONLINES, JSONLINES)
    started = time.perf_counter()
    answer, _ = inference.handler(io.BytesIO(payload), context)
    handler = throughput(users, time.perf_counter() - started, answer)
    print(f"  handler in-process: {handler['users_per_s']:,} users/s", flush=True)
    sliced = payload[: payload.index(b"\n", len(payload) * CHUNK_SLICE_USERS // users) + 1]
    chunks = []
    for size in chunk_sizes:
        settings = dataclasses.replace(inference.SETTINGS, tfs_chunk_size=size)
        started = time.perf_counter()
        answer, _ = inference.predict(
            io.BytesIO(sliced), handler_context(sliced, JSONLINES, JSONLINES), settings
        )
        chunks.append(
            {"chunk_size": size, **throughput(sliced.count(b"\n"), time.perf_counter() - started, answer)}
        )
        print(f"  chunk size {size:>5}: {chunks[-1]['users_per_s']:,} users/s", flush=True)
    with (
        tempfile.TemporaryDirectory() as tls,
        local_endpoint_process(model_dir, Path(tls)) as endpoint,
        requests.Session() as session,
    ):
        started = time.perf_counter()
        reply = post_to_container(session, endpoint.url, endpoint.cert, payload, timeout=3600)
        elapsed = time.perf_counter() - started
        reply.raise_for_status()
        https = throughput(users, elapsed, reply.content)
        assert endpoint.stop() == 0, endpoint.text()
    print(f"  HTTPS /invocations: {https['users_per_s']:,} users/s", flush=True)
    return {
        "request": {
            "max_payload_mb": BATCH_PAYLOAD_MB,
            "bytes": len(payload),
            "users": users,
            "line": payload[: payload.index(b"\n")].decode(),
            "k": 10,
        },
        "handler_in_process": handler,
        "https_invocations": https,
        "chunk_sizes_in_process": chunks,
    }


def check_bars(in_process: dict, https: list[dict]) -> dict[str, bool]:
    default = https[0]
    return {
        "in_process_1_user_p50_under_2ms": in_process["signature_1_user"]["p50_ms"]
        < BARS["in_process_p50_ms"],
        "in_process_1_user_p99_under_5ms": in_process["signature_1_user"]["p99_ms"]
        < BARS["in_process_p99_ms"],
        "https_1_user_p50_under_15ms": default["single_user"]["p50_ms"] < BARS["https_p50_ms"],
        "https_at_least_300_requests_per_s": default["concurrent"]["requests_per_s"]
        >= BARS["https_requests_per_s"],
        "https_zero_errors": all(run["concurrent"]["errors"] == 0 for run in https),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500, help="timed calls per latency measurement")
    parser.add_argument("--requests", type=int, default=2000, help="requests of the concurrent HTTPS run")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTPS clients")
    parser.add_argument("--catalog-sizes", default="10000,100000,1000000", help="comma-separated item counts")
    parser.add_argument(
        "--chunk-sizes",
        default="250,1000,4000",
        help="comma-separated NCF_TFS_CHUNK_SIZE values (batch part)",
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated parts to measure ({', '.join(PARTS)}); others keep their previous results",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small counts, for a smoke run (not for the README)"
    )
    parser.add_argument(
        "--output", type=Path, help="results file (default: results/serve.json, -quick for --quick)"
    )
    args = parser.parse_args(argv)
    args.parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown or not args.parts:
        parser.error(f"--parts: expected some of {', '.join(PARTS)}, got {args.parts}")
    if args.quick:
        args.calls, args.requests, args.catalog_sizes, args.chunk_sizes = 50, 200, "10000", "1000"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    users, items = 6040, 3706
    output = args.output or common.results_path("serve", args.quick)
    header = common.run_header("serve", args.quick)
    partial = len(args.parts) < len(PARTS)
    results = json.loads(output.read_text()) if partial and output.is_file() else {}
    results.update(header if not partial else {})
    results["model"] = {"type": "neumf", "factors": FACTORS, "mlp_layers": list(MLP_LAYERS), "k": 10}
    results["ml1m_model"] = {"users": users, "items": items}
    with tempfile.TemporaryDirectory(prefix="ncf-bench-") as scratch:
        root = Path(scratch)
        print(f"exporting an ML-1M-sized model ({users:,} users, {items:,} items)", flush=True)
        model_dir = export_synthetic_model(root / "ml1m", users, items, mean_seen=165)
        measured: dict[str, Any] = {}
        if "latency" in args.parts:
            print("in-process latency", flush=True)
            measured["in_process"] = bench_in_process(model_dir, users, items, args.calls)
            print(json.dumps(measured["in_process"]), flush=True)
        if "https" in args.parts:
            measured["https"] = []
            for transport in ("inprocess", "http"):
                print(f"HTTPS endpoint, handler transport {transport}", flush=True)
                run = bench_https(model_dir, transport, users, args.calls, args.requests, args.clients)
                measured["https"].append(run)
                print(json.dumps(run), flush=True)
        if "catalog" in args.parts:
            print("catalog growth", flush=True)
            sizes = [int(s) for s in args.catalog_sizes.split(",")]
            measured["catalog_growth"] = bench_catalog(root, sizes, args.calls)
        if "batch" in args.parts:
            print("batch transform throughput", flush=True)
            sizes = [int(s) for s in args.chunk_sizes.split(",")]
            measured["batch"] = bench_batch(model_dir, users, sizes)
        if "sasrec" in args.parts:
            print("sequence model (sasrec)", flush=True)
            measured["sasrec"] = bench_sasrec(root, users, items, args.calls)
    for name, value in measured.items():
        results[name] = {"run": header, **value} if partial and isinstance(value, dict) else value
        if partial and isinstance(value, list):
            results[f"{name}_run"] = header
    results["bars"] = BARS
    if "in_process" in results and "https" in results:
        results["passed"] = check_bars(results["in_process"], results["https"])
    output = common.write_results(output, results)
    print(f"results: {output}")
    print(json.dumps(results.get("passed", {}), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
