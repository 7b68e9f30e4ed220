"""SDK local mode end to end in Docker: train --local -> deploy --local -> invoke --local -> teardown --local.

Runs the CLI as users do, on the local images (`make local-images`; built here when missing). Skipped, with
the reason in the summary, only where Docker cannot run; `.ci/run` makes sure it can.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from contextlib import AbstractContextManager as ContextManager
from pathlib import Path

import pytest
from conftest import DISTRIBUTED_SETTINGS
from serving_fixtures import runtime_client

from deploy.local.process import EndpointProcess, local_endpoint_process, ready_process
from deploy.localmode import build, docker
from deploy.localmode.runtime import LocalRuntimeClient

REPO = Path(__file__).resolve().parents[1]
# Containers and the SDK's `sagemaker-local` network: one Docker module at a time (see conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("docker")]

# The README's requests (Serving section), with ids of the tiny test dataset.
README_REQUESTS = [
    ("application/json", "application/json", {"user_id": "u1", "k": 5}),
    ("application/json", "application/json", {"user_id": "u1", "k": 5, "exclude": ["item-1"]}),
    ("application/json", "application/json", {"user_id": "u2", "k": 3, "exclude_seen": False}),
    (
        "application/json",
        "application/json",
        {"instances": [{"user_id": "u1", "k": 3}, {"user_id": "nobody", "k": 3}]},
    ),
    (
        "application/json",
        "application/json",
        {"signature": "score", "instances": [{"user_id": "u1", "item_id": "item-1"}]},
    ),
    ("application/json", "application/json", {"signature": "similar_items", "item_id": "item-1", "k": 3}),
    ("application/json", "application/json", {"signature": "similar_users", "user_id": "u3", "k": 2}),
    ("application/jsonlines", "application/jsonlines", '{"user_id": "u1", "k": 2}\n{"user_id": "u5"}\n'),
    ("text/csv", "application/json", "u1,3\nu7\nitem-2,2,similar_items\n"),
]


@pytest.fixture
def local_env(tmp_path: Path) -> dict[str, str]:
    """The CLI's environment: its own local_dir and a free endpoint port."""
    return {
        **os.environ,
        "NCF_LOCAL_DIR": str(tmp_path / "local-mode"),
        "NCF_LOCAL_PORT": str(docker.free_port()),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


def cli(env: dict[str, str], *argv: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deploy", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def hyperparameters(settings: dict[str, str]) -> list[str]:
    return [part for name, value in settings.items() for part in ("--hp", f"{name}={value}")]


def leftovers(*images: str) -> list[str]:
    """Containers of these images (running or not) and the SDK's compose network, if any remain."""
    found = []
    for image in images:
        ids = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"ancestor={image}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        found += [f"container {i} of {image}" for i in ids]
    networks = subprocess.run(
        ["docker", "network", "ls", "-q", "--filter", "name=^sagemaker-local$"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return found + [f"network {n}" for n in networks]


def deployed(env: dict[str, str], *argv: str, timeout: float = 300) -> ContextManager[EndpointProcess]:
    """`deploy --local` in the background until its `ready:` line (url "" if it exits first)."""
    return ready_process([sys.executable, "-m", "deploy", "deploy", "--local", *argv], env, timeout)


def same_answer(local: dict, reference: dict, accept: str) -> None:
    local_body, reference_body = local["Body"].read(), reference["Body"].read()
    if accept == "application/jsonlines":
        assert [json.loads(x) for x in local_body.splitlines()] == [
            json.loads(x) for x in reference_body.splitlines()
        ]
    else:
        assert json.loads(local_body) == json.loads(reference_body)


def test_train_deploy_invoke_teardown(
    local_images: build.LocalImages,
    local_env: dict[str, str],
    tiny_channels: Path,
    single_device_metrics: dict,
    tmp_path: Path,
) -> None:
    trained = cli(
        local_env,
        "train",
        "--local",
        "--prepared",
        str(tiny_channels),
        "--json",
        *hyperparameters(DISTRIBUTED_SETTINGS),
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    result = json.loads(trained.stdout)
    # The container trains the model train.py trains on this machine with the same settings and seed.
    for name, value in single_device_metrics["test"].items():
        assert result["metrics"]["test"][name] == pytest.approx(value, abs=0.01), name
    with tarfile.open(result["model_data"]) as archive:
        names = set(archive.getnames())
    assert {"1/saved_model.pb", "code/inference.py"} <= {n.removeprefix("./") for n in names}
    assert leftovers(local_images.training) == []

    port = local_env["NCF_LOCAL_PORT"]
    with deployed(local_env) as endpoint:
        assert endpoint.url == f"http://127.0.0.1:{port}", endpoint.text()
        published = subprocess.run(
            ["docker", "ps", "--filter", f"ancestor={local_images.serving}", "--format", "{{.Ports}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert published == f"127.0.0.1:{port}->8080/tcp"

        local = LocalRuntimeClient(int(port))
        with local_endpoint_process(Path(result["model_data"]), tmp_path / "tls") as reference_endpoint:
            reference = runtime_client(reference_endpoint.url, reference_endpoint.cert)
            for content_type, accept, body in README_REQUESTS:
                data = body if isinstance(body, str) else json.dumps(body)
                request = {
                    "EndpointName": "ncf-endpoint",
                    "Body": data,
                    "ContentType": content_type,
                    "Accept": accept,
                }
                same_answer(local.invoke_endpoint(**request), reference.invoke_endpoint(**request), accept)

        answered = cli(local_env, "invoke", "--local", "--user", "u1", "--k", "3", "--format", "json")
        assert answered.returncode == 0, answered.stderr
        assert [i["item_id"] for i in json.loads(answered.stdout)["predictions"][0]["items"]]
        refused = cli(local_env, "invoke", "--local", "--user", "u1", "--k", "0")
        assert refused.returncode == 1
        assert refused.stderr.strip().startswith(
            "error: endpoint ncf-endpoint: the endpoint refused the request: k must be between 1 and"
        )

        stopped = cli(local_env, "teardown", "--local")
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.strip() == "local endpoint ncf-endpoint: deleted"
        assert endpoint.process.wait(timeout=60) == 0
    assert leftovers(local_images.serving) == []
    assert cli(local_env, "invoke", "--local", "--user", "u1").returncode == 1


def test_tuning_style_run_uses_the_images_train(
    local_images: build.LocalImages, local_env: dict[str, str], tiny_channels: Path
) -> None:
    settings = {**DISTRIBUTED_SETTINGS, "epochs": "2"}
    trained = cli(
        local_env,
        "train",
        "--local",
        "--tuning-style",
        "--prepared",
        str(tiny_channels),
        "--json",
        *hyperparameters(settings),
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    # sagemaker-training's `train` ran the TensorFlow toolkit, which appends model_dir for tuning trials.
    assert "sagemaker_tensorflow_container.training:main" in trained.stderr
    assert "Appending the training job name to model_dir" in trained.stderr
    result = json.loads(trained.stdout)
    with tarfile.open(result["model_data"]) as archive:
        assert "1/saved_model.pb" in {n.removeprefix("./") for n in archive.getnames()}
    assert result["metrics"]["test"]["test_hr_at_10"] > 0
    assert leftovers(local_images.training) == []


def test_failing_training_container_is_one_error_line(
    local_images: build.LocalImages, local_env: dict[str, str], tiny_channels: Path
) -> None:
    failed = cli(local_env, "train", "--local", "--prepared", str(tiny_channels), "--hp", "epochs=0")
    assert failed.returncode == 2
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "error: the local training container exited with status 2: "
        "train.py: error: hyperparameter epochs: must be at least 1, got 0;"
    ), failed.stderr[-2000:]
    assert "fix the cause and run again" in last
    assert "Traceback" not in failed.stderr.split("error: the local")[-1]
    assert leftovers(local_images.training) == []


def test_serving_container_that_exits_is_one_error_line(
    local_images: build.LocalImages, local_env: dict[str, str], tmp_path: Path
) -> None:
    broken = tmp_path / "model.tar.gz"
    with tarfile.open(broken, "w:gz") as archive:
        archive.add(REPO / "inference" / "inference.py", arcname="code/inference.py")
    with deployed(local_env, "--model-data", str(broken), timeout=240) as endpoint:
        assert endpoint.process.wait(timeout=240) == 2
        time.sleep(0.2)  # the last lines
        output = endpoint.text().splitlines()
    errors = [line for line in output if line.startswith("error: ")]
    assert errors == [errors[-1]] and errors[-1].startswith(
        "error: the serving container exited with status 1 before answering /ping"
    ), "\n".join(output)
    assert not any("Traceback" in line for line in output[output.index(errors[-1]) :])
    assert leftovers(local_images.serving) == []


def test_missing_image_names_make_local_images(local_images: build.LocalImages) -> None:
    from ncf.errors import NcfError

    with pytest.raises(NcfError, match=r"image ncf-sagemaker/none:0 is not built: run `make local-images`"):
        docker.require_image("ncf-sagemaker/none:0", "training")


def test_container_exit_codes_come_from_the_engine(local_images: build.LocalImages, tmp_path: Path) -> None:
    """What train --local checks after the SDK's job: docker-compose 1.x's `up --abort-on-container-exit`
    can exit 0 although its container failed (seen under load), so the containers' own status decides."""
    compose_file = tmp_path / "job" / "docker-compose.yaml"
    compose_file.parent.mkdir()
    service = {"image": local_images.base, "entrypoint": ["/bin/bash", "-c", "exit 3"]}
    compose_file.write_text(json.dumps({"services": {"algo-1": service}}))
    command = docker.compose_command()
    try:
        subprocess.run(
            [*command, "-f", str(compose_file), "up", "--abort-on-container-exit"],
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert docker.container_exit_codes(compose_file) == [3]
    finally:
        docker.compose_down(compose_file)
    assert docker.container_exit_codes(compose_file) == []
