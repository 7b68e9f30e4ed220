"""Run ncf-sagemaker on Amazon SageMaker (`python -m deploy <command>`), and serve it locally (deploy.local).

The SageMaker side uses the SageMaker Python SDK v3: `ModelTrainer` for training jobs and the
`sagemaker.core` resources (`Model`, `EndpointConfig`, `Endpoint`, `TransformJob`) for hosting, with
boto3 where the SDK has no API (S3 sync, Application Auto Scaling, listing and tags).
Importing this package imports nothing heavy: the SDK loads only when a command needs it.
"""
