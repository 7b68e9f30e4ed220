"""Settings resolve defaults < SageMaker environment < command line, and bad values are named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ncf.errors import NcfError
from ncf.models.sasrec_settings import SEQUENCE_DEFAULTS
from ncf.train_settings import TrainConfig, load_config

PATHS = ["--train", "t", "--validation", "v", "--test", "s", "--model-dir", "m"]


def test_defaults_apply_when_nothing_is_given() -> None:
    config = load_config(PATHS, {})
    assert config.model_type == TrainConfig.model_type
    assert config.mlp_layers == (64, 32, 16, 8)
    assert config.package is True
    assert config.checkpoint_dir is None


def test_the_sequence_model_has_its_own_defaults_where_the_user_gave_none() -> None:
    ncf = load_config(PATHS, {})
    sasrec = load_config([*PATHS, "--model-type", "sasrec"], {})
    assert (ncf.epochs, ncf.patience) == (TrainConfig.epochs, TrainConfig.patience)
    assert (sasrec.epochs, sasrec.patience) == (SEQUENCE_DEFAULTS["epochs"], SEQUENCE_DEFAULTS["patience"])
    given = load_config([*PATHS, "--epochs", "7"], {"SM_HPS": '{"model_type": "sasrec", "patience": "3"}'})
    assert (given.model_type, given.epochs, given.patience) == ("sasrec", 7, 3)


def test_sagemaker_environment_provides_paths_and_hyperparameters(tmp_path: Path) -> None:
    environ = {
        "SM_MODEL_DIR": "/opt/ml/model",
        "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train",
        "SM_CHANNEL_VALIDATION": "/opt/ml/input/data/validation",
        "SM_CHANNEL_TEST": "/opt/ml/input/data/test",
        "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data",
        "SM_HPS": json.dumps({"epochs": 3, "model_type": "gmf", "mlp_layers": "32,16", "pretrain": "False"}),
    }
    config = load_config([], environ)
    assert (config.train, config.model_dir, config.output_data_dir) == (
        "/opt/ml/input/data/train",
        "/opt/ml/model",
        "/opt/ml/output/data",
    )
    assert (config.epochs, config.model_type, config.mlp_layers, config.pretrain) == (
        3,
        "gmf",
        (32, 16),
        False,
    )
    assert config.package is False  # SageMaker packs SM_MODEL_DIR itself


def test_command_line_beats_environment_and_both_spellings_work() -> None:
    environ = {"SM_HPS": json.dumps({"epochs": 3, "learning_rate": 0.5})}
    config = load_config([*PATHS, "--epochs", "7", "--learning_rate", "0.01", "--batch-size", "64"], environ)
    assert (config.epochs, config.learning_rate, config.batch_size) == (7, 0.01, 64)


def test_sagemaker_bookkeeping_arguments_are_ignored() -> None:
    config = load_config([*PATHS, "--sagemaker_program", "train.py", "--_tuning_objective_metric", "x"], {})
    assert config.epochs == TrainConfig.epochs


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "two"], "epochs: expected a whole number, got 'two'"),
        (["--epochs", "0"], "epochs: must be at least 1"),
        (["--learning-rate", "-1"], "learning_rate: must be positive"),
        (["--model-type", "svd"], "model_type: expected one of"),
        (["--mlp-layers", "63,8"], "mlp_layers"),
        (["--mlp-layers", "64"], "mlp_layers"),
        (["--pretrain", "maybe"], "pretrain: expected true or false"),
        (["--pretrain", "true", "--model-type", "gmf"], "only NeuMF can be pretrained"),
        (["--num-neg", "0"], "num_neg"),
        (["--selection-metric", "rmse"], "selection_metric"),
        (["--epochs-typo", "3"], "unknown option --epochs-typo"),
    ],
)
def test_bad_settings_name_what_is_wrong(args: list[str], message: str) -> None:
    with pytest.raises(NcfError, match=message):
        load_config([*PATHS, *args], {})


def test_missing_channel_names_the_flag_and_the_variable() -> None:
    with pytest.raises(NcfError, match=r"--validation.*SM_CHANNEL_VALIDATION"):
        load_config(["--train", "t", "--test", "s", "--model-dir", "m"], {})


def test_malformed_sm_hps_is_reported() -> None:
    with pytest.raises(NcfError, match="SM_HPS is not valid JSON"):
        load_config(PATHS, {"SM_HPS": "{epochs: 3"})


def test_a_sharded_train_channel_is_read_from_the_input_data_config() -> None:
    sharded = json.dumps({"train": {"S3DistributionType": "ShardedByS3Key"}, "test": {}})
    replicated = json.dumps({"train": {"S3DistributionType": "FullyReplicated"}})
    environ = {"SM_INPUT_DATA_CONFIG": sharded, "SM_CHANNEL_VOCABULARY": "/opt/ml/input/data/vocabulary"}
    config = load_config(PATHS, environ)
    assert config.train_sharded is True and config.vocabulary == "/opt/ml/input/data/vocabulary"
    assert load_config(PATHS, {"SM_INPUT_DATA_CONFIG": replicated}).train_sharded is False
    assert load_config(PATHS, {}).train_sharded is None
    assert "train_sharded" not in config.hyperparameters()  # where data lives, not how the model trains
    with pytest.raises(NcfError, match=r"train_sharded: .*--vocabulary"):
        load_config(PATHS, {"SM_INPUT_DATA_CONFIG": sharded})
    with pytest.raises(NcfError, match="SM_INPUT_DATA_CONFIG is not valid JSON"):
        load_config(PATHS, {"SM_INPUT_DATA_CONFIG": "{train"})
