"""``python -m skysift``."""

from skysift.cli import console

if __name__ == "__main__":
    console()
