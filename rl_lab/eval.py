"""``python -m rl_lab.eval`` is ``rl-lab-eval``."""

from rl_lab.app import play

if __name__ == "__main__":
    play()
