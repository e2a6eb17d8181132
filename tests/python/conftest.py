# SPDX-License-Identifier: MIT
"""Shared fixtures; the parity suites report the largest error they saw per dtype."""

import os
from collections import defaultdict

import numpy as np

MAX_ERR = defaultdict(float)   # (suite, dtype) -> largest relative error seen
CASES = defaultdict(int)       # suite -> number of cases compared
FUZZ = defaultdict(int)        # API entry point -> malformed calls tried (each ended in a documented error or a result)

try:  # hypothesis suites: fixed examples in CI (CI=true), fresh random ones elsewhere
    from hypothesis import settings

    settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
    settings.register_profile("dev", deadline=None, print_blob=True)
    settings.load_profile("ci" if os.environ.get("CI", "").lower() == "true" else "dev")
except ImportError:
    pass


def record(suite: str, dtype, err: float) -> None:
    key = (suite, np.dtype(dtype).name)
    MAX_ERR[key] = max(MAX_ERR[key], err)


def pytest_terminal_summary(terminalreporter):
    if FUZZ:
        terminalreporter.section("gatecell: fuzz of the public API with malformed arguments")
        for entry, n in sorted(FUZZ.items()):
            terminalreporter.write_line(f"{entry:<40} {n:>6} cases")
        terminalreporter.write_line(f"{'total':<40} {sum(FUZZ.values()):>6} cases, 0 crashes (the run finished)")
    if not MAX_ERR:
        return
    terminalreporter.section("gatecell: largest relative error per suite and dtype")
    for (suite, dtype), err in sorted(MAX_ERR.items()):
        terminalreporter.write_line(f"{suite:<28} {dtype:<8} {err:.3e}   ({CASES[suite]} cases)")
