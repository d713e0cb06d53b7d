# On PYTHONPATH, this stands in for a machine without Box2D: importing it fails as a missing package does.
raise ImportError("No module named 'Box2D' (hidden by rl_lab's tests)")
