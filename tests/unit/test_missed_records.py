from aiokafka.structs import ConsumerRecord

from agents.missed_records import as_message


def test_a_record_read_directly_looks_like_one_faust_delivered_with_its_timestamp_in_seconds():
    record = ConsumerRecord(topic="orders", partition=2, offset=41, timestamp=1_700_000_000_250, timestamp_type=0,
                            key=b"o-1", value=b"\x00body", checksum=None, serialized_key_size=3,
                            serialized_value_size=5, headers=[("x-attempt", b"2")])

    message = as_message(record)

    assert (message.topic, message.partition, message.offset) == ("orders", 2, 41)
    assert message.timestamp == 1_700_000_000.25
    assert (message.key, message.value, list(message.headers)) == (b"o-1", b"\x00body", [("x-attempt", b"2")])
