import os
import sys

# tests import helpers (random_models) that live beside them
sys.path.insert(0, os.path.dirname(__file__))
