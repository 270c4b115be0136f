"""Training losses, Hungarian matching and training-curve metrics for PanSt3R / MUSt3R (method.md section 6).

Pure functions on plain tensors: nothing here depends on the model classes. See ``design.md`` in this folder.
"""
