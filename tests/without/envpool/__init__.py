# On PYTHONPATH, this stands in for a machine without EnvPool: importing it fails as a missing package does.
raise ImportError("No module named 'envpool' (hidden by rl_lab's tests)")
