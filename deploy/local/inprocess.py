"""A `requests` transport adapter that hands requests to an in-process `App` instead of a socket.

The local endpoint mounts it on `inference.SESSION` for the stand-in's URL, so `inference.py` runs
unchanged (same JSON request to `context.rest_uri`, same JSON response parsing) without a loopback HTTP
hop to the TF Serving stand-in. The stand-in also keeps listening on its port, so other clients and the
`--transport http` mode see exactly the same routes.
"""

from __future__ import annotations

from io import BytesIO
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from deploy.local.httpserver import App, Request


class InProcessAdapter(BaseAdapter):
    """Answer `requests` calls by calling `app(Request)`; the URL's host and port are ignored."""

    def __init__(self, app: App) -> None:
        super().__init__()
        self.app = app

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        url = urlsplit(request.url)
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        path = url.path + (f"?{url.query}" if url.query else "")
        answer = self.app(Request(request.method or "GET", path, CaseInsensitiveDict(request.headers), body))
        response = requests.Response()
        response.status_code = answer.status
        response.headers = CaseInsensitiveDict(answer.headers)
        if answer.content_type:
            response.headers["Content-Type"] = answer.content_type
        response.raw = BytesIO(answer.body)
        response._content = answer.body
        response.encoding = "utf-8"
        response.url = request.url
        response.request = request
        response.reason = ""
        return response

    def close(self) -> None:
        """Nothing to release: there is no connection pool."""
