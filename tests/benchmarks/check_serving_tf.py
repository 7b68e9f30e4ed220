"""Load an exported SavedModel with another TensorFlow and call every signature once (TF Serving check).

The SageMaker TensorFlow Serving 2.20 image runs TF Serving 2.19.1, which cannot load ops newer than
TensorFlow 2.19. `make bench-serve` runs this script with the Python of a separate virtual environment
holding `tensorflow-cpu==2.19.*` (`make tf219-venv` creates it in .venv-tf219/). It imports nothing of
the project, only TensorFlow, so what loads here is what the SavedModel itself contains.

Usage: .venv-tf219/bin/python tests/benchmarks/check_serving_tf.py SAVED_MODEL_DIR USER_ID ITEM_ID
Prints one JSON object: the TensorFlow version, the retrieval metadata, each signature's output shapes
and the process's peak resident memory.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf


def call_every_signature(loaded: object, user: str, item: str) -> dict[str, dict[str, list[int]]]:
    """Each signature's output shapes for one request; raises if one fails to run."""
    signatures = loaded.signatures
    ids, users, items, k = tf.constant, tf.constant([user, "unknown-user"]), tf.constant([item, item]), 10
    requests = {
        "serving_default": {"user_id": users, "k": ids(k)},
        "recommend_excluding": {"user_id": users, "k": ids(k), "exclude": tf.constant([[item], [""]])},
        "recommend_with_seen": {"user_id": users, "k": ids(k), "exclude": tf.constant([[item], [""]])},
        "score": {"user_id": users, "item_id": items},
        "similar_items": {"item_id": items, "k": ids(k)},
        "similar_users": {"user_id": users, "k": ids(k)},
        "recommend_from_history": {
            "user_id": users,
            "history": tf.constant([[item, ""], [item, "zz"]]),
            "k": ids(k),
        },
        # Exports with filters / item fields; an unknown filter only sets filter_error, the graph still runs.
        "recommend_filtered": {
            "user_id": users,
            "k": ids(k),
            "exclude": tf.constant([[item], [""]]),
            "exclude_seen": ids(True),
            "filter": ids("any"),
            "filter_names": tf.constant([""]),
            "filter_values": tf.constant([[""]]),
        },
        "similar_items_filtered": {
            "item_id": items,
            "k": ids(k),
            "filter": ids("any"),
            "filter_names": tf.constant([""]),
            "filter_values": tf.constant([[""]]),
        },
        "item_fields": {"item_id": items, "field": tf.constant(["title", "genres"])},
    }
    return {
        name: {out: list(value.shape) for out, value in signatures[name](**inputs).items()}
        for name, inputs in requests.items()
        if name in signatures  # older exports lack recommend_from_history; filters and fields are optional
    }


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


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.split("\n\n")[-2], file=sys.stderr)
        return 2
    path, user, item = argv
    loaded = tf.saved_model.load(path)
    metadata = getattr(loaded, "retrieval_metadata", None)
    report = {
        "tensorflow": tf.__version__,
        "retrieval": json.loads(metadata.numpy()) if metadata is not None else None,
        "signatures": call_every_signature(loaded, user, item),
        "peak_rss_mib": peak_rss_mib(),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
