"""Load exported SavedModels with another TensorFlow and call every signature they list (TF Serving check).

The SageMaker TensorFlow Serving 2.20 image runs TF Serving 2.19.1 (it is built FROM
`tensorflow/serving:2.19.1`), which cannot load ops newer than TensorFlow 2.19 and loads a SavedModel
the TF1 way: `SavedModelBundle` restores the `serve` meta graph into a graph session and runs each
signature's tensors by name. `make install` (target `tf-serving-venv`) creates `.venv-tf219/` holding
that TensorFlow (`tests/tf-serving-requirements.txt`); this script imports nothing of the project, only
TensorFlow and numpy, so what loads here is what the SavedModel itself contains.

Two loaders:
- `session` (TF Serving's way, as `saved_model_cli run` does): `tf.compat.v1.saved_model.loader.load`
  with the `serve` tag in a graph session, then every signature of the meta graph's signature map;
- `eager` (the default, `bench-serve`'s memory figures): `tf.saved_model.load` and its `signatures`.

Every signature gets the same kind of request, built from its inputs' names (`request`): a known and an
unknown user / item, `k`, and padded `exclude` / `history` rows. A signature with an input this script
has no value for is an error naming it, so a new signature is covered as soon as it exists.
`tests/test_serving_tf219.py` runs this under TF 2.19 (session loader) for every export shape and compares
the answers with TF 2.21's; `bench_retrieval.py` runs it on its large exports.

Usage: check_serving_tf.py [--loader eager|session] SAVED_MODEL_DIR USER_ID ITEM_ID [SAVED_MODEL_DIR ...]
Prints one JSON line per export: the TensorFlow version, the loader, the retrieval metadata (eager only),
each signature's output shapes and answers, the errors, and the process's peak resident memory so far.
Exits 1 when an export failed to load or a signature failed to answer.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf

SERVING_TF_PYTHON = Path(__file__).resolve().parents[2] / ".venv-tf219" / "bin" / "python"
UNKNOWN_USER, UNKNOWN_ITEM = "unknown-user", "unknown-item"
K = 10
# Signature keys TensorFlow reserves for itself (the init op); TF Serving does not serve them.
RESERVED_PREFIX = "__saved_model_"

# name -> (dtype, rank) of each input of one signature, read from the SavedModel.
InputSpec = dict[str, tuple[tf.dtypes.DType, int | None]]
Answers = dict[str, dict[str, np.ndarray]]


def request_values(user: str, item: str) -> dict[str, np.ndarray]:
    """The value of every input name the project's signatures use, as a batch of two rows: a known
    user / item first, then an unknown one; `exclude` and `history` padded with "" and holding an unknown
    id (fold-in of an unknown user with known items, the GradientTape path, is the second history row)."""
    strings = np.asarray
    return {
        "user_id": strings([user, UNKNOWN_USER], dtype=object),
        "item_id": strings([item, UNKNOWN_ITEM], dtype=object),
        "k": np.asarray(K, dtype=np.int32),
        "exclude": strings([[item, ""], ["", UNKNOWN_ITEM]], dtype=object),
        "history": strings([[item, ""], [item, UNKNOWN_ITEM]], dtype=object),
        # Exports with filters and item fields: the interaction filter of the tests' `filtered_model`
        # (tests/conftest.py: it reads the stored interactions, ages counted from `now`); a filter name
        # an export lacks only sets `filter_error` (the whole graph still runs); two item columns that
        # may or may not exist.
        "exclude_seen": np.asarray(True),
        "filter": np.asarray("not_bought_lately", dtype=object),
        "filter_names": strings(["EVENTS", "DAYS"], dtype=object),
        "filter_values": strings([["purchase"], ["30"]], dtype=object),
        "now": np.asarray(2_728_000.0, dtype=np.float64),
        "field": strings(["title", "genres"], dtype=object),
    }


def request(signature: str, inputs: InputSpec, user: str, item: str) -> dict[str, np.ndarray]:
    """The request for one signature: a value for each of its inputs, checked against its dtype and rank.

    Raises ValueError naming the signature and input this script has no fitting value for."""
    values = request_values(user, item)
    chosen = {}
    for name, (dtype, rank) in sorted(inputs.items()):
        value = values.get(name)
        if value is None:
            raise ValueError(
                f"signature {signature!r}: no request value for input {name!r} ({dtype.name}, rank {rank}); "
                "add one to request_values in tests/benchmarks/check_serving_tf.py"
            )
        expected = tf.string if value.dtype == object else tf.as_dtype(value.dtype)
        if dtype != expected or (rank is not None and rank != value.ndim):
            raise ValueError(
                f"signature {signature!r}: input {name!r} is {dtype.name} of rank {rank}, the request value"
                f" is {expected.name} of rank {value.ndim}"
            )
        chosen[name] = value
    return chosen


def _each_signature(
    names: list[str], call: Callable[[str], dict[str, np.ndarray]]
) -> tuple[Answers, dict[str, str]]:
    """`call(name)` for every name, sorted: the answers, and the errors of the signatures that failed."""
    answers, errors = {}, {}
    for name in sorted(names):
        try:
            answers[name] = call(name)
        except Exception as error:  # reported per signature: one failure hides no other
            errors[name] = f"{type(error).__name__}: {error}"
    return answers, errors


def _rank(tensor_info: Any) -> int | None:
    """The rank a signature def's TensorInfo declares (None: unknown)."""
    shape = tensor_info.tensor_shape
    return None if shape.unknown_rank else len(shape.dim)


def answers_in_session(path: str, user: str, item: str) -> tuple[Answers, dict[str, str]]:
    """TF Serving's loader: the `serve` meta graph in a TF1 graph session, every signature it lists run by
    its tensor names. Returns each signature's outputs and the errors of those that failed."""
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
        signatures = {
            name: definition
            for name, definition in meta_graph.signature_def.items()
            if not name.startswith(RESERVED_PREFIX)
        }

        def call(name: str) -> dict[str, np.ndarray]:
            definition = signatures[name]
            inputs = {key: (tf.as_dtype(info.dtype), _rank(info)) for key, info in definition.inputs.items()}
            values = request(name, inputs, user, item)
            feed = {definition.inputs[key].name: value for key, value in values.items()}
            fetches = {key: info.name for key, info in definition.outputs.items()}
            return session.run(fetches, feed_dict=feed)

        return _each_signature(list(signatures), call)


def answers_eager(path: str, user: str, item: str) -> tuple[Answers, dict[str, str], Any]:
    """TensorFlow 2's loader: `tf.saved_model.load` and every entry of its `signatures`. Returns the
    answers, the errors, and the loaded object (its signatures hold it only weakly: keep it alive)."""
    loaded = tf.saved_model.load(path)

    def call(name: str) -> dict[str, np.ndarray]:
        function = loaded.signatures[name]
        specs = function.structured_input_signature[1]
        inputs = {key: (spec.dtype, spec.shape.rank) for key, spec in specs.items()}
        values = request(name, inputs, user, item)
        outputs = function(**{key: tf.constant(value) for key, value in values.items()})
        return {key: tensor.numpy() for key, tensor in outputs.items()}

    answers, errors = _each_signature(list(loaded.signatures), call)
    return answers, errors, loaded


def as_json_value(value: np.ndarray) -> Any:
    """A numpy answer as JSON: bytes decoded to text, numbers and booleans as they are."""
    if value.dtype == object:
        return np.vectorize(lambda text: text.decode("utf-8"), otypes=[object])(value).tolist()
    return value.tolist()


def peak_rss_mib() -> int:
    """The serving memory of the model: this process's peak resident size after loading it and answering
    every signature once. Linux's VmHWM starts afresh at exec; ru_maxrss (the fallback) would include the
    memory of the parent this process was forked from."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def check_export(path: str, user: str, item: str, loader: str) -> dict[str, Any]:
    """One export's report: every signature's answers (and shapes) under `loader`, and what failed."""
    report: dict[str, Any] = {"path": path, "tensorflow": tf.__version__, "loader": loader}
    try:
        if loader == "session":
            answers, errors = answers_in_session(path, user, item)
        else:
            answers, errors, loaded = answers_eager(path, user, item)
            metadata = getattr(loaded, "retrieval_metadata", None)
            report["retrieval"] = json.loads(metadata.numpy()) if metadata is not None else None
    except Exception as error:  # a failed load is this export's finding only
        answers, errors = {}, {"(load)": f"{type(error).__name__}: {error}"}
    report["signatures"] = {
        sig: {out: list(v.shape) for out, v in got.items()} for sig, got in answers.items()
    }
    report["answers"] = {
        sig: {out: as_json_value(v) for out, v in got.items()} for sig, got in answers.items()
    }
    report["errors"] = errors
    report["peak_rss_mib"] = peak_rss_mib()
    return report


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loader", choices=("eager", "session"), default="eager")
    parser.add_argument("exports", nargs="+", metavar="SAVED_MODEL_DIR USER_ID ITEM_ID")
    args = parser.parse_args(argv)
    if len(args.exports) % 3:
        parser.error("give SAVED_MODEL_DIR USER_ID ITEM_ID for each export")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    failed = False
    for start in range(0, len(args.exports), 3):
        report = check_export(*args.exports[start : start + 3], loader=args.loader)
        for name, error in report["errors"].items():
            print(f"error: {report['path']}: {name}: {error}", file=sys.stderr)
        failed |= bool(report["errors"])
        print(json.dumps(report), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
