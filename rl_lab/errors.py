"""Errors that end a run with a clear one-paragraph message instead of a traceback.

The Hydra entry points (``rl_lab.app``) catch :class:`RLLabError`, print its message and exit
with :attr:`RLLabError.exit_code`. Library code raises them; it never calls ``sys.exit``.
"""

from __future__ import annotations


class RLLabError(Exception):
    """Base class of the errors rl_lab reports to the user as one paragraph."""

    exit_code = 1


class ConfigError(RLLabError, ValueError):
    """A bad config value, environment id, file or usage: exit code 2.

    The message names the key and the value and says what to do.
    """

    exit_code = 2


class MissingExtraError(ConfigError, ImportError):
    """An optional dependency is missing; the message says which extra installs it."""

    def __init__(self, package: str, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the optional package '{package}', which is not installed. "
            f'Install it with: pip install -e ".[{extra}]"  (or: pip install "rl-lab[{extra}]").'
        )
        self.package = package
        self.extra = extra
