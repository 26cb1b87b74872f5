from types import SimpleNamespace

from faust.streams import current_event

from orders.processing.live_states import LiveStates


class RecordingTable(dict):
    """A table that notes which event was current when each key was written."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[int, int | None]] = []

    def __setitem__(self, key, value) -> None:
        event = current_event()
        self.writes.append((key, event.message.partition if event else None))
        super().__setitem__(key, value)


class Event:
    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition)


def count_order(live: LiveStates, partition: int) -> None:
    """What an agent does for a counted order: change the shared state, then say so."""
    live.get(partition).count(1_000_000)
    live.changed(partition, Event(partition))


def test_both_agents_change_one_shared_state_and_one_write_carries_both_changes():
    table = RecordingTable()
    live = LiveStates(table)
    count_order(live, 2)
    live.get(2).retries += 1
    live.changed(2, Event(2))
    assert table.writes == []
    assert live.flush() == 1
    assert table[2]["orders"] == 1 and table[2]["retries"] == 1
    assert len(table.writes) == 1


def test_each_write_runs_with_an_event_of_the_written_partition_current():
    table = RecordingTable()
    live = LiveStates(table)
    for partition in (4, 1):
        count_order(live, partition)
    live.flush()
    assert sorted(table.writes) == [(1, 1), (4, 4)]
    assert current_event() is None


def test_only_states_changed_since_the_last_flush_are_written():
    table = RecordingTable()
    live = LiveStates(table)
    count_order(live, 0)
    live.flush()
    live.get(3)
    assert live.flush() == 0
    assert table.writes == [(0, 0)]


def test_peek_sees_changes_not_yet_written():
    live = LiveStates(RecordingTable())
    live.get(3).count(2)
    assert live.peek(3).orders == 1


def test_after_forget_changes_are_written_and_states_are_read_again_from_the_table():
    table = RecordingTable()
    live = LiveStates(table)
    count_order(live, 0)
    live.forget()
    assert table[0]["orders"] == 1
    table[0] = {**table[0], "orders": 7}  # recovered from a changelog another worker wrote
    assert live.get(0).orders == 7
