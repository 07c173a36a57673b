"""What every test run shares: the figures tests record (`record_property`) shown in the terminal summary."""

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    recorded = [report for reports in terminalreporter.stats.values() for report in reports]
    figures = [
        (report.nodeid, value)
        for report in recorded
        if getattr(report, "when", None) == "call"
        for _, value in getattr(report, "user_properties", ())
    ]
    if figures:
        terminalreporter.section("figures")
        for nodeid, value in figures:
            terminalreporter.write_line(f"{nodeid}: {value}")
