"""Fit: how a model trains. Epoch sources (`pair_epochs` with `pair_sampling` for the NCF types,
`sequence_epochs` for SASRec), the compiled step loop (`step_loop`), the stage loop that runs epochs,
validates, stops early and checkpoints (`stage_loop`, `checkpointing`), the optimizer (`optim`),
workers and devices (`distribute`) and spot interruption (`interruption`).
"""
