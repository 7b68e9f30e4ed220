"""Neural Collaborative Filtering: data preparation, training, evaluation and export.

This package is self-contained so that `training/` can be uploaded as a SageMaker
`source_dir` and run in the TensorFlow training container on its own.
Importing the package itself never imports TensorFlow.
"""
