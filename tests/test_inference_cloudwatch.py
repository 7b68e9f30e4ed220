"""What the serving container's log (CloudWatch) shows for refused requests, and what a metric filter counts.

The TF Serving container's Python service (aws/deep-learning-containers,
`scripts/docker/tensorflow/inference/sagemaker/python_service.py`) configures logging before it imports
`code/inference.py` (`logging.basicConfig(format="%(process)d %(asctime)s %(levelname)-8s %(message)s",
force=True, level=logging.INFO)`) and wraps every handler call in
`except Exception as e: log.exception("exception handling request: ...")`. Each line the container writes
is one CloudWatch log event. A child process here runs the handler under that exact configuration and
wrapper, for one client error and one server error, and the README's metric filter is applied to what it
printed with CloudWatch's rule for JSON filter patterns: `{ $.event = "server_error" }` matches a log
event only when the whole event is a JSON object whose `event` field is that string.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CONTAINER = """
import io, logging, socket, sys
from pathlib import Path

logging.basicConfig(
    format="%(process)d %(asctime)s %(levelname)-8s %(message)s", force=True, level=logging.INFO
)
log = logging.getLogger("python_service")

from deploy.local.container_server import Context, import_inference

inference = import_inference(Path(sys.argv[1]))
with socket.socket() as closed:  # a port nothing listens on: TF Serving is down
    closed.bind(("127.0.0.1", 0))
    rest_uri = f"http://127.0.0.1:{closed.getsockname()[1]}/v1/models/model:predict"
for body in (b'{"user_id": 7}', b'{"user_id": "42"}'):
    context = Context(None, None, None, rest_uri, None, None, None, "application/json", "application/json",
                      len(body))
    try:
        inference.handler(io.BytesIO(body), context)
    except Exception as e:
        log.exception("exception handling request: {}".format(e))
"""


def json_filter_matches(log_event: str, field: str, value: str) -> bool:
    """CloudWatch's `{ $.<field> = "<value>" }` on one log event (JSON patterns match only JSON events)."""
    try:
        document = json.loads(log_event)
    except ValueError:
        return False
    return isinstance(document, dict) and document.get(field) == value


def container_log() -> list[str]:
    """The log events of one client error then one server error, handled as in the serving container."""
    result = subprocess.run(
        [sys.executable, "-c", CONTAINER, str(REPO / "inference" / "inference.py")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
    )
    return (result.stdout + result.stderr).splitlines()


def test_the_server_error_filter_counts_only_the_handlers_server_error_lines():
    events = container_log()
    server = [e for e in events if json_filter_matches(e, "event", "server_error")]
    client = [e for e in events if json_filter_matches(e, "event", "client_error")]
    assert [json.loads(e) for e in server] == [
        {"event": "server_error", "error": "the model server is unavailable", "field": None, "status": 503}
    ]
    assert [json.loads(e)["field"] for e in client] == ["user_id"]
    # What the README warns about: the container logs both refusals at ERROR with a traceback, so an alarm
    # on "ERROR" or "Traceback" also fires on the client's bad request.
    container_errors = [e for e in events if " ERROR    exception handling request: " in e]
    assert len(container_errors) == 2 and '"status": 400' in container_errors[0]
    assert sum(e.startswith("Traceback (most recent call last):") for e in events) == 2
