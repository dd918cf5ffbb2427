"""The version, in one place: pyproject.toml reads it (``[tool.setuptools.dynamic]``), ``fastrnn.__version__``
and ``fastrnn --version`` show it."""
__version__ = "0.1.0"
