"""Models: the one interface every model type implements (`base.Model`), the registry of model types
(`registry`, TensorFlow-free), and the model types themselves (`ncf_models`: MF, GMF, MLP, NeuMF;
`sasrec`: SASRec, with its settings' rules in `sasrec_settings`).

Nothing outside this package asks which kind a model is: it asks the model (see `base.Model`).
"""
