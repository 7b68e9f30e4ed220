"""Serving benchmarks (`make bench-serve`): top-k latency in-process and through the local HTTPS endpoint.

Models are synthetic NeuMF recommenders exported with the training code's own `ncf.export` (random
weights: timing does not depend on what was learned), at the project's default size (32 factors, MLP
64,32,16,8):
1. In-process, ML-1M-sized model (6,040 users, 3,706 items, ~1M seen interactions): top-10 for 1 user
   and for a batch of 100 users, calling the `serving_default` concrete function directly, and for 1 user
   through `inference.py`'s handler with the in-process transport (p50/p99 over `--calls` calls).
   Bars: 1 user p50 < 2 ms, p99 < 5 ms.
2. Through the local HTTPS endpoint (`python -m deploy.local`, a child process) with boto3: p50/p99 for
   1 user (sequential), then throughput with `--clients` concurrent clients over `--requests` requests,
   for both handler transports (in-process and loopback HTTP to the stand-in).
   Bars: p50 < 15 ms, >= 300 requests/s, zero errors. Client and server share the machine's cores.
3. Top-10 latency for 1 user as the catalog grows (`--catalog-sizes`, 1,000 users).
4. The sequence model (`model_type` sasrec, default settings, random weights, ML-1M-sized with 50 stored
   items per user): `serving_default` for 1 user in-process, and a `history` request (an unknown user with
   5 events) through the local HTTPS endpoint, sequential. Bars (issue 11): p50 <= 3 ms and <= 10 ms.
   `--only-sasrec` runs this part alone (results/serve-sasrec.json).

Results (with a description of the machine) go to `tests/benchmarks/results/serve.json`.
Run from the repository root: `.venv/bin/python tests/benchmarks/bench_serve.py [--quick]`.
"""

from __future__ import annotations

import argparse
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
sys.path[:0] = [str(REPO), str(REPO / "training")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import common  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from ncf.export import Recommender, copy_inference_code, save_recommender  # noqa: E402
from ncf.models import ModelSpec, NcfModel  # noqa: E402
from ncf.vocab import UserItemSets, Vocabulary  # noqa: E402

from deploy.invoke import make_client  # noqa: E402
from deploy.local.container_server import Context, import_inference  # noqa: E402
from deploy.local.inprocess import InProcessAdapter  # noqa: E402
from deploy.local.model_artifact import open_model  # noqa: E402
from deploy.local.process import local_endpoint_process  # noqa: E402
from deploy.local.tfserving_standin import SavedModelServable  # noqa: E402

FACTORS = 32
MLP_LAYERS = (64, 32, 16, 8)
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
    from ncf.config import TrainConfig
    from ncf.sasrec import build_sasrec

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


def bench_in_process(model_dir: Path, num_users: int, calls: int) -> dict[str, Any]:
    """Direct signature calls (1 user, 100 users) and the full handler in-process (1 user)."""
    artifact = open_model(model_dir)
    servable = SavedModelServable(artifact)
    recommend = servable.signatures["serving_default"]
    inference = import_inference(artifact.code_dir / "inference.py")
    inference.SESSION.mount("http://localhost:8501/", InProcessAdapter(servable))
    rest_uri = "http://localhost:8501/v1/models/model:predict"

    def handler(i: int) -> Any:
        body = json.dumps({"user_id": f"u{i % num_users}", "k": 10}).encode()
        context = Context(
            None, None, None, rest_uri, None, None, None, "application/json", "application/json", len(body)
        )
        return inference.handler(io.BytesIO(body), context)

    return {
        "signature_1_user": latency_ms(top10(recommend, user_batches(num_users, 1, 64)), calls),
        "signature_100_users": latency_ms(top10(recommend, user_batches(num_users, 100, 8)), calls, warmup=5),
        "handler_1_user": latency_ms(handler, calls),
    }


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
        recommend = tf.saved_model.load(str(model_dir / "1")).signatures["serving_default"]
        count = max(20, calls if size <= 100_000 else calls // 10)
        result = latency_ms(top10(recommend, user_batches(1000, 1, 50)), count, warmup=5)
        curve.append({"items": size, "export_seconds": round(export_s, 1), **result})
        print(
            f"  catalog {size:>9,} items: p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms",
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
        "--quick", action="store_true", help="small counts, for a smoke run (not for the README)"
    )
    parser.add_argument(
        "--output", type=Path, help="results file (default: results/serve.json, -quick for --quick)"
    )
    parser.add_argument("--only-sasrec", action="store_true", help="only the sequence model's part (4.)")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.requests, args.catalog_sizes = 50, 200, "10000"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    users, items = 6040, 3706
    if args.only_sasrec:
        with tempfile.TemporaryDirectory(prefix="ncf-bench-") as scratch:
            sasrec = bench_sasrec(Path(scratch), users, items, args.calls)
        results = {**common.run_header("serve-sasrec", args.quick), "sasrec": sasrec}
        output = common.write_results(common.results_path("serve-sasrec", args.quick), results)
        print(f"results: {output}\n{json.dumps(sasrec, indent=2)}")
        return 0
    with tempfile.TemporaryDirectory(prefix="ncf-bench-") as scratch:
        root = Path(scratch)
        print(f"exporting an ML-1M-sized model ({users:,} users, {items:,} items)", flush=True)
        model_dir = export_synthetic_model(root / "ml1m", users, items, mean_seen=165)
        print("in-process latency", flush=True)
        in_process = bench_in_process(model_dir, users, args.calls)
        print(json.dumps(in_process), flush=True)
        https = []
        for transport in ("inprocess", "http"):
            print(f"HTTPS endpoint, handler transport {transport}", flush=True)
            https.append(bench_https(model_dir, transport, users, args.calls, args.requests, args.clients))
            print(json.dumps(https[-1]), flush=True)
        print("catalog growth", flush=True)
        catalog = bench_catalog(root, [int(s) for s in args.catalog_sizes.split(",")], args.calls)
        print("sequence model (sasrec)", flush=True)
        sasrec = bench_sasrec(root, users, items, args.calls)
    results = {
        **common.run_header("serve", args.quick),
        "model": {"type": "neumf", "factors": FACTORS, "mlp_layers": list(MLP_LAYERS), "k": 10},
        "ml1m_model": {"users": users, "items": items},
        "in_process": in_process,
        "https": https,
        "catalog_growth": catalog,
        "sasrec": sasrec,
        "bars": BARS,
        "passed": check_bars(in_process, https),
    }
    output = common.write_results(args.output or common.results_path("serve", args.quick), results)
    print(f"results: {output}")
    print(json.dumps(results["passed"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
