"""The `stack` fixture, shared by the integration and benchmark tests (unit tests never ask for it)."""
import pytest

from tests.stack import USES_LOCAL_STACK, local_stack_running, stack_command


@pytest.fixture(scope="session")
def stack():
    """The real broker and registry for the whole session: the local stack (started here if it is not
    running, and then stopped at the end), or the ones the TEST_* variables name."""
    started_here = USES_LOCAL_STACK and not local_stack_running()
    if started_here:
        assert stack_command("up").returncode == 0, "scripts/stack up failed"
    yield
    if started_here:
        stack_command("down")


#: The figures the real-stack tests measured ("[name] ..." lines they print), shown at the end of the run so
#: that CI's output carries them: a passing test's output is otherwise not shown.
_FIGURES: list[tuple[str, str]] = []


def pytest_runtest_logreport(report):
    if report.when == "call" and report.passed:
        for line in report.capstdout.splitlines():
            if line.startswith("["):
                _FIGURES.append((report.nodeid, line))


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.section("figures measured by the tests")
        for nodeid, line in _FIGURES:
            terminalreporter.write_line(f"{nodeid.rsplit('::', 1)[-1]}: {line}")
