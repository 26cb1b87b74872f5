"""Kafka outside Faust's consumer, by job: `reading`, `producing`, `admin` (topics), `transactions` (a source
partition's transactional producer) and `broker` (the reads the processing asks for, off the event loop)."""
