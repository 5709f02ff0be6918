"""Parity with NeMo itself. These tests need NeMo, so they run only in `.venv-nemo` through
`make parity`; the main run leaves this directory out (`--ignore=tests/parity` in `addopts`)."""

from __future__ import annotations

import pytest

from tests.parity.errors import RESULTS, Comparison


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    import nemo

    terminalreporter.section(f"nemo_lite vs NeMo {nemo.__version__}: float32, CPU")
    header = f"{'component':<12}{'case':<44}{'max abs err':>12}{'max rel err':>12}{'max |ref|':>10}"
    terminalreporter.write_line(header)
    worst: dict[str, Comparison] = {}
    for r in RESULTS:
        terminalreporter.write_line(
            f"{r.component:<12}{r.case:<44}{r.max_abs:>12.2e}{r.max_rel:>12.2e}{r.scale:>10.3g}"
        )
        if r.component not in worst or r.max_abs > worst[r.component].max_abs:
            worst[r.component] = r
    for name, r in worst.items():
        terminalreporter.write_line(
            f"worst {name}: abs {r.max_abs:.2e}, rel {r.max_rel:.2e} ({r.case})"
        )
