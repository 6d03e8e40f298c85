"""Inference-time scaling for language-model reasoning: problems, grading and step verifiers."""

from .data import Problem, default_data_path, extract_answer, is_correct, load_problems
from .verifier import ArithmeticVerifier
