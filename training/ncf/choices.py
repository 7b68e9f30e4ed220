"""The values a categorical setting can take, defined once.

TensorFlow-free, so the modules that validate settings (`ncf.config`, `ncf.splitting`, `prepare.py`)
and the modules that implement them (`ncf.models`, `ncf.similarity`) can share one definition.
"""

from __future__ import annotations

MODEL_TYPES = ("neumf", "gmf", "mlp", "mf")
FEEDBACK_MODES = ("implicit", "explicit")
SELECTION_METRICS = ("ndcg", "hr", "ndcg_full", "recall_full", "rmse")
SIMILARITY_MEASURES = ("cosine", "jaccard", "pearson")
