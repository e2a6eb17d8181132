# SPDX-License-Identifier: MIT
"""``python -m gatecell``: where the C++ package lives (--cmake-dir, --include-dir), --version;
anything else goes to the command-line tools in gatecell.cli when they are installed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import List, Optional

from ._version import __version__


def package_dir() -> Path:
    """The folder holding the compiled module, the headers and the CMake package.

    It is the folder of gatecell._core, not of this file: an editable install keeps the Python
    sources in the source tree but installs the built files into site-packages.
    """
    spec = importlib.util.find_spec("gatecell._core")
    if spec is None or spec.origin is None:
        raise RuntimeError("gatecell._core is not installed; reinstall gatecell")
    return Path(spec.origin).resolve().parent


def cmake_dir() -> Path:
    """The folder to put on CMAKE_PREFIX_PATH (or pass as gatecell_DIR) for find_package(gatecell)."""
    return package_dir() / "lib" / "cmake" / "gatecell"


def include_dir() -> Path:
    """The folder holding gatecell/gatecell.hpp."""
    return package_dir() / "include"


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args == ["--cmake-dir"]:
        print(cmake_dir())
        return 0
    if args == ["--include-dir"]:
        print(include_dir())
        return 0
    if args == ["--version"]:
        print(__version__)
        return 0
    if importlib.util.find_spec("gatecell.cli") is not None:
        from . import cli

        return int(cli.main(args) or 0)
    print("usage: python -m gatecell --cmake-dir | --include-dir | --version", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
