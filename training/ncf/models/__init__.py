"""Models: the model types (`ncf_models`: MF, GMF, MLP, NeuMF; `sasrec`: SASRec)."""
