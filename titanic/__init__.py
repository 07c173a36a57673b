# The version, set here only: pyproject.toml and the README quote it (tests/test_release.py checks).
__version__ = "1.0.0"
