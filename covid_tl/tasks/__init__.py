"""One module per entry script, named like it: what train.py, evaluate.py, explain.py, ... do."""
