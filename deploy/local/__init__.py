"""A local stand-in for a SageMaker TensorFlow Serving endpoint (no Docker, no AWS): `python -m deploy.local`.

Modules: `model_artifact` (model dir or model.tar.gz), `model_server` (real TF Serving or the
`tfserving_standin`), `container_server` (`/ping`, `/invocations` running `code/inference.py`),
`runtime_api` (`/endpoints/<name>/invocations`, ModelError mapping), `tls` (self-signed certificate),
`httpserver` (threaded HTTP/1.1 server), `inprocess` (socket-free transport), `endpoint` (wiring),
`container` (the local serving image's `serve`: the container contract on 8080, used by SDK local mode).
Importing the package imports neither TensorFlow nor the server modules.
"""
