"""`invoke --local`: the SDK's local runtime client, made to fail the way the real runtime client fails.

`sagemaker.core.local.local_session.LocalSagemakerRuntimeClient.invoke_endpoint` POSTs to
`http://localhost:<serving_port>/invocations` and returns whatever the container answered, status 500
included. The real `sagemaker-runtime` client raises `ModelError` (`OriginalStatusCode`,
`OriginalMessage`) for a non-2xx container answer, and botocore's `EndpointConnectionError` when nothing
listens; `deploy invoke` reports those. This wrapper (a narrow workaround of that SDK gap) raises the same
two, so `invoke --local` prints the same `error:` lines as `invoke` against SageMaker.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError, EndpointConnectionError


class LocalRuntimeClient:
    """`invoke_endpoint` through the SDK's local runtime client, raising like boto3's."""

    def __init__(self, port: int) -> None:
        from sagemaker.core.local.local_session import LocalSagemakerRuntimeClient

        self.port = port
        self.client = LocalSagemakerRuntimeClient({"local": {"serving_port": port}})

    def invoke_endpoint(self, **request: Any) -> dict[str, Any]:
        import urllib3

        try:
            answer = self.client.invoke_endpoint(**request)
        except urllib3.exceptions.HTTPError:
            raise EndpointConnectionError(endpoint_url=f"http://localhost:{self.port}/invocations") from None
        status = answer["ResponseMetadata"]["HTTPStatusCode"]
        if 200 <= status < 300:
            return answer
        message = answer["Body"].read().decode("utf-8", errors="replace")
        error = {
            "Error": {"Code": "ModelError", "Message": f"Received server error ({status}) from model"},
            "OriginalStatusCode": status,
            "OriginalMessage": message,
        }
        raise ClientError(error, "InvokeEndpoint")
