"""The runtime API route over HTTPS, driven by an unmodified boto3 client (fake container, no TensorFlow).

A container answer other than 2xx must reach boto3 as the real runtime API delivers it: `ModelError`
(HTTP 424) with `OriginalStatusCode`, `OriginalMessage` and the "Received ... error" message.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from cryptography import x509
from serving_fixtures import https_server, runtime_client

from deploy.local.httpserver import Request, Response
from deploy.local.tls import ensure_certificate


class FakeContainer:
    """Replies with `reply` and records what reached `/invocations`."""

    def __init__(self, reply: Response) -> None:
        self.reply = reply
        self.requests: list[Request] = []

    def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        return self.reply


def test_success_passes_body_and_content_type(tmp_path):
    container = FakeContainer(Response(200, b'{"predictions": []}', content_type="application/jsonlines"))
    with https_server(container, tmp_path) as (_, url, cert):
        answer = runtime_client(url, cert).invoke_endpoint(
            EndpointName="ncf",
            Body=b"{}",
            ContentType="application/json",
            Accept="application/jsonlines",
            CustomAttributes="tfs-model-name=model,trace=1",
        )
    assert answer["Body"].read() == b'{"predictions": []}'
    assert answer["ContentType"] == "application/jsonlines"
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    (forwarded,) = container.requests
    assert (forwarded.method, forwarded.path, forwarded.body) == ("POST", "/invocations", b"{}")
    assert forwarded.headers["Content-Type"] == "application/json"
    assert forwarded.headers["Accept"] == "application/jsonlines"
    assert forwarded.headers["X-Amzn-SageMaker-Custom-Attributes"] == "tfs-model-name=model,trace=1"
    assert "Authorization" not in forwarded.headers


@pytest.mark.parametrize(
    ("status", "side", "code"),
    [(500, "server", "INTERNAL_FAILURE_FROM_MODEL"), (400, "client", "CLIENT_ERROR_FROM_MODEL")],
)
def test_container_errors_become_model_error(tmp_path, status, side, code):
    body = json.dumps({"error": '{"error": "k must be between 1 and 100", "field": "k", "status": 400}'})
    with https_server(FakeContainer(Response(status, body.encode())), tmp_path) as (_, url, cert):
        client = runtime_client(url, cert)
        with pytest.raises(client.exceptions.ModelError) as caught:
            client.invoke_endpoint(EndpointName="my-endpoint", Body=b"{}", ContentType="application/json")
        raw = requests.post(f"{url}/endpoints/x/invocations", data=b"{}", verify=str(cert))
        assert raw.status_code == 424 and raw.json()["ErrorCode"] == code
        assert raw.headers["x-amzn-ErrorType"].startswith("ModelError:")
    response = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["Error"]["Code"] == "ModelError"
    assert response["OriginalStatusCode"] == status
    assert response["OriginalMessage"] == body
    assert response["Error"]["Message"].startswith(
        f'Received {side} error ({status}) from primary with message "{body}".'
    )
    assert response["LogStreamArn"].endswith(":log-group:/aws/sagemaker/Endpoints/my-endpoint")


def test_container_routes_are_served_on_the_same_port(tmp_path):
    with https_server(FakeContainer(Response(200, b"ok", content_type="text/plain")), tmp_path) as (
        _,
        url,
        cert,
    ):
        answer = requests.post(f"{url}/invocations", data=b"x", verify=str(cert))
    assert (answer.status_code, answer.text) == (200, "ok")


def test_requests_are_served_in_parallel(tmp_path):
    """All 8 handlers must be in flight at once: each waits at a barrier that opens only when the 8th
    arrives, so a server that handles requests one at a time answers 500 (broken barrier), whatever
    the machine's load (a wall-clock bound would flake on a busy machine)."""
    together = threading.Barrier(8, timeout=30)

    def meets_the_others(request: Request) -> Response:
        together.wait()
        return Response(200, b"{}")

    with https_server(meets_the_others, tmp_path) as (_, url, cert):
        client = runtime_client(url, cert)
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: client.invoke_endpoint(EndpointName="e", Body=b"{}"), range(8)))
    assert all(r["Body"].read() == b"{}" for r in results)


def test_stopping_finishes_requests_in_flight(tmp_path):
    entered = threading.Event()

    def slow(request: Request) -> Response:
        entered.set()
        time.sleep(0.5)
        return Response(200, b"done")

    with https_server(slow, tmp_path) as (server, url, cert):
        result: dict[str, requests.Response] = {}
        worker = threading.Thread(
            target=lambda: result.setdefault(
                "r", requests.post(f"{url}/invocations", data=b"", verify=str(cert))
            )
        )
        worker.start()
        assert entered.wait(5)
        server.request_stop()
        assert server.drain(5.0)
        worker.join(5)
    assert result["r"].status_code == 200 and result["r"].text == "done"
    assert result["r"].headers["Connection"] == "close"
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{url}/invocations", data=b"", verify=str(cert), timeout=2)


def test_certificate_is_created_once_and_covers_loopback(tmp_path):
    cert, key, created = ensure_certificate(tmp_path)
    assert created and (key.stat().st_mode & 0o777) == 0o600
    names = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert {str(ip) for ip in names.value.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert names.value.get_values_for_type(x509.DNSName) == ["localhost"]
    assert ensure_certificate(tmp_path)[2] is False
    key.write_text("garbage")
    assert ensure_certificate(tmp_path)[2] is True


def test_untrusted_certificate_is_refused_by_clients(tmp_path):
    with https_server(FakeContainer(Response(200, b"{}")), tmp_path / "server") as (_, url, _cert):
        other, _, _ = ensure_certificate(tmp_path / "other")
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{url}/ping", verify=str(other))
