"""The SageMaker runtime API's `InvokeEndpoint` (`POST /endpoints/<name>/invocations`) over the container.

What a boto3 `sagemaker-runtime` client sees, per botocore's service model (rest-json) and the real API:
- The container's 2xx answer: HTTP 200, its body and `Content-Type`, plus `x-Amzn-Invoked-Production-Variant`
  and `x-amzn-RequestId` headers.
- Any other container status: HTTP 424 with `x-amzn-ErrorType: ModelError:...` and the JSON body
  `{"ErrorCode": "CLIENT_ERROR_FROM_MODEL" | "INTERNAL_FAILURE_FROM_MODEL", "LogStreamArn", "Message":
  "Received server error (500) from primary with message \"<container body>\". See ... for more
  information.", "OriginalMessage": "<container body>", "OriginalStatusCode": 500}`, which botocore
  raises as `client.exceptions.ModelError` with `OriginalStatusCode`/`OriginalMessage` in `e.response`.
The forwarded request headers are the ones InvokeEndpoint models: `Content-Type`, `Accept` and
`X-Amzn-SageMaker-Custom-Attributes`. Where the real message points at CloudWatch Logs, this one points
at the local log. Every other path goes to the container front (`/ping`, `/invocations`).
With a capture writer (`--capture-dir`), every answered request is also written as SageMaker's data
capture writes it (deploy/local/capture_writer.py), under the variant `--variant` names.
Not reproduced: SigV4 checks (any credentials work), endpoint names (any name is served), the 6 MB
payload limit and the 60 s container timeout, and the runtime's own errors for those (ValidationError).
"""

from __future__ import annotations

import json
import re
import uuid
from urllib.parse import unquote

from requests.structures import CaseInsensitiveDict

from deploy.local.capture_writer import CaptureWriter
from deploy.local.container_server import CUSTOM_ATTRIBUTES_HEADER
from deploy.local.httpserver import App, Request, Response

_ROUTE = re.compile(r"^/endpoints/(?P<name>[^/?]+)/invocations(?:\?.*)?$")
_FORWARDED = ("Content-Type", "Accept", CUSTOM_ATTRIBUTES_HEADER)
VARIANT = "AllTraffic"
LOCAL_ACCOUNT = "000000000000"
LOG_GROUP_PREFIX = "/aws/sagemaker/Endpoints/"
LOG_HINT = "the local endpoint's log (stderr of python -m deploy.local)"


def model_error(endpoint: str, status: int, body: bytes, *, region: str, request_id: str) -> Response:
    """The runtime API's answer when the container replied `status` (not 2xx) with `body`."""
    original = body.decode("utf-8", errors="replace")
    side = "client" if 400 <= status < 500 else "server"
    document = {
        "ErrorCode": "CLIENT_ERROR_FROM_MODEL" if side == "client" else "INTERNAL_FAILURE_FROM_MODEL",
        "LogStreamArn": f"arn:aws:logs:{region}:{LOCAL_ACCOUNT}:log-group:{LOG_GROUP_PREFIX}{endpoint}",
        "Message": (
            f'Received {side} error ({status}) from primary with message "{original}". '
            f"See {LOG_HINT} for more information."
        ),
        "OriginalMessage": original,
        "OriginalStatusCode": status,
    }
    headers = {
        "x-amzn-RequestId": request_id,
        "x-amzn-ErrorType": "ModelError:http://internal.amazon.com/coral/com.amazon.sagemaker.runtime/",
    }
    return Response(424, json.dumps(document).encode(), content_type="application/json", headers=headers)


class RuntimeApi:
    """Route `/endpoints/<name>/invocations` to the container's `/invocations`, the rest to the container."""

    def __init__(
        self, container: App, *, region: str, variant: str = VARIANT, capture: CaptureWriter | None = None
    ) -> None:
        self.container = container
        self.region = region
        self.variant = variant
        self.capture = capture

    def __call__(self, request: Request) -> Response:
        match = _ROUTE.match(request.path)
        if match is None:
            return self.container(request)
        request_id = str(uuid.uuid4())
        if request.method != "POST":
            return Response(
                404,
                json.dumps({"message": f"{request.method} is not an InvokeEndpoint request"}).encode(),
                headers={"x-amzn-RequestId": request_id, "x-amzn-ErrorType": "UnknownOperationException"},
            )
        headers = CaseInsensitiveDict(
            {name: request.headers[name] for name in _FORWARDED if request.headers.get(name) is not None}
        )
        headers["Content-Length"] = str(len(request.body))
        answer = self.container(Request("POST", "/invocations", headers, request.body))
        endpoint = unquote(match["name"])
        if not 200 <= answer.status < 300:
            return model_error(
                endpoint, answer.status, answer.body, region=self.region, request_id=request_id
            )
        if self.capture is not None:
            request_type = headers.get("Content-Type") or "application/octet-stream"
            self.capture.write(endpoint, request.body, request_type, answer.body, answer.content_type)
        return Response(
            200,
            answer.body,
            content_type=answer.content_type,
            headers={"x-amzn-RequestId": request_id, "x-Amzn-Invoked-Production-Variant": self.variant},
        )
