"""``python -m rl_lab`` is ``rl-lab``."""

from rl_lab.app import main

if __name__ == "__main__":
    main()
