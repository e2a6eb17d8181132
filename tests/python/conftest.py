# SPDX-License-Identifier: MIT
"""Shared fixtures; the parity suites report the largest error they saw per dtype."""

from collections import defaultdict

import numpy as np

MAX_ERR = defaultdict(float)   # (suite, dtype) -> largest relative error seen
CASES = defaultdict(int)       # suite -> number of cases compared


def record(suite: str, dtype, err: float) -> None:
    key = (suite, np.dtype(dtype).name)
    MAX_ERR[key] = max(MAX_ERR[key], err)


def pytest_terminal_summary(terminalreporter):
    if not MAX_ERR:
        return
    terminalreporter.section("gatecell: largest relative error per suite and dtype")
    for (suite, dtype), err in sorted(MAX_ERR.items()):
        terminalreporter.write_line(f"{suite:<28} {dtype:<8} {err:.3e}   ({CASES[suite]} cases)")
