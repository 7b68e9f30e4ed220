"""The model types by name: `--model-type NAME` builds the class registered under NAME.

TensorFlow-free, so that train.py checks its settings (`ncf.train_settings`) before TensorFlow loads: an
entry names its class by import path ("module:Class"), imported on first use, and carries what the
settings need to know of the type (its own defaults, its own rules, whether it can be pretrained).

Adding a model type: one module with a `ncf.models.base.Model` subclass, plus one `register` line below.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ncf.errors import NcfError
from ncf.models.sasrec_settings import SEQUENCE_DEFAULTS, check_sequence_settings


@dataclass(frozen=True)
class ModelType:
    """One registered model type.

    Attributes:
        name: the `--model-type` value.
        implementation: "module:Class" of its `ncf.models.base.Model` subclass.
        defaults: settings whose default differs for this type (applied where the user gave none).
        check: its own rules on the settings (a `TrainConfig`), raising `NcfError`; None: no rules.
        pretrainable: whether `--pretrain` applies (NeuMF from trained GMF and MLP towers).
    """

    name: str
    implementation: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    check: Callable[[Any], None] | None = None
    pretrainable: bool = False


_TYPES: dict[str, ModelType] = {}


def register(model_type: ModelType) -> ModelType:
    """Make `model_type` buildable by its name; a name is registered once."""
    if model_type.name in _TYPES:
        raise ValueError(f"model type {model_type.name!r} is registered already")
    _TYPES[model_type.name] = model_type
    return model_type


def unregister(name: str) -> None:
    """Forget a registered type (for tests that register a type of their own)."""
    del _TYPES[name]


def names() -> tuple[str, ...]:
    """Every registered name, in registration order."""
    return tuple(_TYPES)


def find(name: str) -> ModelType | None:
    """The type registered as `name`, or None."""
    return _TYPES.get(name)


def model_type(name: str) -> ModelType:
    """The type registered as `name`; `NcfError` naming the registered ones otherwise."""
    found = find(name)
    if found is None:
        raise NcfError(f"model type {name!r} is not registered; registered: {', '.join(names())}")
    return found


def model_class(name: str) -> type:
    """The `Model` subclass of the type registered as `name` (imports its module, and TensorFlow)."""
    module, _, cls = model_type(name).implementation.partition(":")
    return getattr(importlib.import_module(module), cls)


# -- the built-in model types ---------------------------------------------------------------------
NCF_MODELS = "ncf.models.ncf_models:NcfModel"
register(ModelType("neumf", NCF_MODELS, pretrainable=True))
register(ModelType("gmf", NCF_MODELS))
register(ModelType("mlp", NCF_MODELS))
register(ModelType("mf", NCF_MODELS))
register(ModelType("sasrec", "ncf.models.sasrec:SasRecModel", SEQUENCE_DEFAULTS, check_sequence_settings))

NCF_MODEL_TYPES = tuple(name for name in names() if _TYPES[name].implementation == NCF_MODELS)  # tests' grid
