"""Language models as generative functions (see ppl/lm/model.py)."""
