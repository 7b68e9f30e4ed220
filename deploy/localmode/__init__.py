"""SageMaker SDK local mode for this project: the same training job and endpoint in local Docker containers.

Modules: `build` (the local training and serving images, built offline; `make local-images`), `docker`
(engine checks and clean-up), `sdk_fixes` (narrow workarounds for SDK v3 local-mode gaps), `training`
(`deploy train --local`, and a tuning-style run), `hosting` (`deploy deploy/invoke/teardown --local`),
`pipeline` (`deploy pipeline start --local`: the retraining pipeline in the SDK's local pipeline session).
Importing the package imports neither the SDK nor Docker tooling.
"""
