"""The values a categorical setting can take, defined once.

TensorFlow-free, so the modules that validate settings (`ncf.train_settings`, `ncf.data.splitting`,
`prepare.py`) and the modules that implement them (`ncf.models`, `ncf.serving.similarity`) can share one
definition.
"""

from __future__ import annotations

from ncf.models import registry

MODEL_TYPES = registry.names()  # the model types registered in ncf.models.registry
SEQUENCE_LOSSES = ("auto", "softmax", "sampled_softmax", "bce")  # ncf.fit.sequence_epochs
MIXED_PRECISION_MODES = ("auto", "on", "off")  # ncf.fit.precision
FEEDBACK_MODES = ("implicit", "explicit")
SELECTION_METRICS = ("ndcg", "hr", "ndcg_full", "recall_full", "rmse")
SIMILARITY_MEASURES = ("cosine", "jaccard", "pearson")
