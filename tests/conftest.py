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

