"""Evaluations of the clinical models, measured on public data; their figures go into the model cards."""
