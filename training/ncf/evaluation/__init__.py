"""Evaluation: the sampled and full-catalog protocols and their metrics (`protocol`), and a trained
model's scoring functions as the scorer they take (`scoring`).
"""
