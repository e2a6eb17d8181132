# SPDX-License-Identifier: MIT
"""Runs the gatecell benchmark (same as ``gatecell bench``); see bench/README.md for the options."""

import sys

from gatecell.bench import main

if __name__ == "__main__":
    sys.exit(main())
