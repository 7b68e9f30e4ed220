"""The values a categorical setting can take, defined once.

TensorFlow-free, so the modules that validate settings (`ncf.train_settings`, `ncf.data.splitting`,
`prepare.py`) and the modules that implement them (`ncf.models`, `ncf.serving.similarity`) can share one
definition.
"""

from __future__ import annotations

NCF_MODEL_TYPES = ("neumf", "gmf", "mlp", "mf")  # the ncf.models.ncf_models.NcfModel types
MODEL_TYPES = (*NCF_MODEL_TYPES, "sasrec")  # and the sequence model, ncf.models.sasrec
SEQUENCE_LOSSES = ("softmax", "sampled_softmax", "bce")  # ncf.fit.sequence_epochs
FEEDBACK_MODES = ("implicit", "explicit")
SELECTION_METRICS = ("ndcg", "hr", "ndcg_full", "recall_full", "rmse")
SIMILARITY_MEASURES = ("cosine", "jaccard", "pearson")
