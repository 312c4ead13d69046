"""``python -m skysift``."""

from skysift.cli import _console

if __name__ == "__main__":
    _console()
