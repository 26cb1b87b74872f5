from types import SimpleNamespace

from faust.streams import current_event

from agents.live_states import LiveStates


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


def event_from(partition: int) -> Event:
    return Event(partition)


def test_two_batches_on_one_partition_share_one_state_and_the_last_write_has_both_changes():
    table = RecordingTable()
    live = LiveStates(table)
    first, second = live.open(2), live.open(2)
    assert first is second
    first.count(1_000_000)
    live.close(2, event_from(2), changed=True)
    second.retries += 1
    live.close(2, event_from(2), changed=True)
    assert table[2]["orders"] == 1 and table[2]["retries"] == 1


def test_a_closed_partition_is_read_again_from_the_table():
    table = RecordingTable()
    live = LiveStates(table)
    live.open(0).count(5)
    live.close(0, event_from(0), changed=True)
    table[0] = {**table[0], "orders": 7}  # e.g. recovered from the changelog after a rebalance
    assert live.open(0).orders == 7


def test_the_table_is_written_with_an_event_of_the_written_partition_current():
    table = RecordingTable()
    live = LiveStates(table)
    live.open(4).count(1)
    live.close(4, event_from(4), changed=True)
    assert table.writes == [(4, 4)]
    assert current_event() is None


def test_an_unchanged_state_is_not_written():
    table = RecordingTable()
    live = LiveStates(table)
    live.open(1)
    live.close(1, event_from(1), changed=False)
    assert table.writes == []


def test_peek_sees_changes_not_yet_written():
    live = LiveStates(RecordingTable())
    live.open(3).count(2)
    assert live.peek(3).orders == 1
