# On PYTHONPATH, this stands in for a machine without MuJoCo: importing it fails as a missing package does.
raise ImportError("No module named 'mujoco' (hidden by rl_lab's tests)")
