"""Neural Collaborative Filtering and SASRec: data preparation, training, evaluation and export.

One subpackage per stage, each importing only the stages before it and the shared modules here:

- `ncf.data`: interactions in, split, written as channels, read back as index arrays (`TrainingData`);
- `ncf.models`: the model interface (`ncf.models.base`), its registry and the model types;
- `ncf.fit`: epoch sources, the compiled step loop, the stage loop, checkpoints, workers;
- `ncf.evaluation`: the evaluation protocols and a model's scorer for them;
- `ncf.serving`: the exported SavedModel, its signatures, retrieval, fold-in, similarity, top-k.

Shared by every stage: `errors`, `choices`, `checksums`, `sagemaker_env`, `settings_cli` (settings
dataclasses that generate a command line), `train_settings` (train.py's settings) and `reporting` (the
log and metric contract the deploy CLI reads too).

This package is self-contained so that `training/` can be uploaded as a SageMaker
`source_dir` and run in the TensorFlow training container on its own.
Importing the package itself never imports TensorFlow.
"""
