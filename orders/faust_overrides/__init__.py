"""Every place the app reaches into faust-streaming's or aiokafka's internals, and why.

Pinned and tested against faust-streaming 0.15.3, aiokafka 0.14.0 and
mode-streaming 0.7.1 (requirements.txt, requirements.lock).
`tests/unit/test_faust_overrides.py` keeps a digest of the source of every
upstream method overridden, copied or relied on below, and
fails, naming it, when an upgrade changes one: read the new code, adapt the
override, then update the digest.

- `consumer`: the worker's consumer reads committed records only
  (`AIOKafkaConsumerThread._create_worker_consumer` hard-codes
  read_uncommitted outside Faust's own exactly-once mode, and a 1.5 s
  `fetch_max_wait_ms`, which lowered to 100 ms no longer holds a
  rebalance's offset lookups behind an idle fetch; aiokafka's 50 MiB
  `fetch_max_bytes` is capped at 4 MiB, so the records one fetch brings do
  not grow with the partitions owned), and what its fetcher holds ahead of
  the agents is bounded over all partitions (`read_ahead`: installed on the
  fetcher at the first assignment, `ConsumerThread.on_partitions_assigned`,
  it wraps `Fetcher._get_actions_per_node`, which the fetch routine calls
  before each round of requests, and sizes what `Fetcher._records` holds
  from each `FetchResult`'s records; `AIOKafkaConsumerThread._fetch_records`
  tells it which partitions are being delivered), and after each
  rebalance resumes every source partition at the partition state's next
  offset instead of the group's committed offset, and a source partition
  with neither back at offset 0, so records a dropped fetch had passed are
  read again (`Consumer.perform_seek`;
  a seek that a newer rebalance overtook raises aiokafka's `IllegalStateError`
  from `SubscriptionState._assigned_state` and is left to that rebalance's recovery);
  after Faust's last commit at shutdown it commits no more, since a later
  commit would reach the consumer thread's closed event loop and end the
  worker with exit 1 (`Consumer.on_stop`, `Consumer.commit`); a partition
  task pauses and resumes its own source partitions (`hold_partitions`:
  `Consumer.pause_partitions`, `resume_partitions`, which act through the
  active partitions `_wait_next_records` fetches and which a rebalance
  forgets for revoked partitions); every resume, the app's own and Faust's
  table recovery's (`Consumer.resume_partitions`), wakes the fetch of records
  waiting in the consumer's thread (`AIOKafkaConsumerThread.getmany` hands
  it the active set itself, which the resume updates; aiokafka's
  `Fetcher._notify` of its `_fetch_waiters`, through the thread's
  `ServiceThread.thread_loop`), which otherwise waited out its timeout.
- `recovery`: table recovery ends at the changelog's last committed record.
  The app writes the changelog in transactions, so a partition ends in a
  commit marker that no consumer ever receives, and Faust's recovery, which
  waits for a record at `highwater - 1`, would wait forever
  (`Recovery._build_highwaters`; the table manager builds this recovery, and
  starts without the one-second sleep of `TableManager.on_start`, which waits
  for tables declared late: this app declares its table when it is built).
- `tables`: the partition-state table does not send changelog records itself
  (`Table.on_key_set`): the worker's transactions write them, together with
  the retry copies and dead letters; and it lets the app take its new
  partitions over (wait out an earlier owner's open transaction, read the
  states) before recovery reads the changelog (`Collection.on_rebalance`). A write to
  the local store runs with a stand-in event (`faust.streams._current_event`),
  which the RocksDB store reads the partition from.
- `rebalance`: how long table recovery has received nothing
  (`Recovery._recovery_started_at`, `_active_events_received_at`), asking
  the group to rebalance (aiokafka's `coordinator.request_rejoin`, handed to
  the consumer thread without waiting: mode's `cast_thread`), and this
  worker's membership of the group (`GroupCoordinator.generation`,
  `member_id`, `group_id`, `_group_instance_id`; generation -1 after
  `reset_generation`), which the worker's transactions send with their
  offsets so that the group coordinator fences a member the group has left
  behind.
- `commands`: a command group under the `faust` CLI (`AppCommand.as_click_command`).
- `assignor`: a worker back under the same WORKER_ID with another web URL takes its cached assignment and
  asks for a rebalance, instead of failing Faust's assertion (`PartitionAssignor.on_assignment`) and hanging.
- `serializers`: `faust send` encodes bytes through the order codec (`Registry.dumps_value` skips bytes);
  the codec is built on first use.
- the app (`orders/app.py`) builds its runtime in `App.on_init_dependencies`, which Faust runs before it
  adds its monitor to the sensors, so the Prometheus monitor is in place by then.
"""

#: The pinned versions these overrides were written against.
PINNED = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0", "mode-streaming": "0.7.1"}

#: Upstream code this package overrides, copies or relies on -> sha256 (first 16 hex digits) of its source.
UPSTREAM = {
    # consumer.py: read committed; resume at the states' offsets; no commit after the last one
    "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._create_worker_consumer": "c2701bfc3e6f6cad",
    "faust.transport.drivers.aiokafka.Consumer._new_consumer_thread": "0870ec53dea75083",
    "aiokafka.AIOKafkaConsumer.__init__": "01506f316191f7c9",
    "aiokafka.AIOKafkaConsumer.start": "2f1ba70443327538",
    "faust.transport.consumer.Consumer.perform_seek": "0e8c130ff4b0afd8",
    "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._seek_wait": "9d221e816d940467",
    # a seek of a partition no longer assigned raises IllegalStateError, which perform_seek lets pass
    "aiokafka.consumer.subscription_state.SubscriptionState._assigned_state": "37b820a2efaa841c",
    "faust.transport.consumer.Consumer.on_stop": "45b1d2210ce2b526",
    "faust.transport.consumer.Consumer.commit": "a354437baaa08bf8",
    "faust.app.base.App._new_transport": "42db531312dd776f",
    # consumer.py hold_partitions: pausing a partition stops its delivery only; a rebalance forgets it
    "faust.transport.consumer.Consumer.pause_partitions": "27a1c94bdacd54de",
    "faust.transport.consumer.Consumer.resume_partitions": "afe6b7c02a41d63c",
    "faust.transport.consumer.Consumer._set_active_tps": "401f4dc883191950",
    "faust.transport.consumer.Consumer._wait_next_records": "6218e1969a636b3f",
    "faust.transport.consumer.Consumer.on_partitions_revoked": "d04b7ae72c6fc206",
    "faust.transport.consumer.Consumer.on_partitions_assigned": "29ce96596f05a18c",
    # consumer.py resume_partitions: a resume wakes the waiting fetch of records, which holds the active set itself
    "faust.transport.consumer.Consumer._get_active_partitions": "b24897f3c7afdb5d",
    "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread.getmany": "26fc5fc9f3b667e1",
    "aiokafka.consumer.fetcher.Fetcher._notify": "d3a30d94f34fd3a0",
    "aiokafka.consumer.fetcher.Fetcher._create_fetch_waiter": "61d840568746477e",
    "mode.threads.ServiceThread.__init__": "82979878990cdff5",
    # read_ahead.py: installed on the thread's first assignment; the fetch routine plans each round with
    # _get_actions_per_node (and waits for records to be taken or its timeout when no fetch goes out); what is
    # held is each FetchResult's records until they are all taken; Faust's fetch of records names the
    # partitions being delivered
    "faust.transport.consumer.ConsumerThread.on_partitions_assigned": "e59e8dda43724bd4",
    "aiokafka.consumer.fetcher.Fetcher._get_actions_per_node": "1dab2cf937d165d0",
    "aiokafka.consumer.fetcher.Fetcher._fetch_requests_routine": "2a8ec5932644c9b0",
    "aiokafka.consumer.fetcher.Fetcher.fetched_records": "be4348896b9b66af",
    "aiokafka.consumer.fetcher.Fetcher.__init__": "bf21ecb7e0f210b7",
    "aiokafka.consumer.fetcher.FetchResult.__init__": "126a3e45763bd404",
    "aiokafka.consumer.fetcher.FetchResult.getall": "3e717e30de5068d5",
    "aiokafka.consumer.fetcher.PartitionRecords.__init__": "8ec1c2ae6ea1af87",
    "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._fetch_records": "39a2c6c79fc1455a",
    # recovery.py: where recovery ends
    "faust.tables.recovery.Recovery._build_highwaters": "91b4cc0d3724ae7b",
    "faust.tables.recovery.Recovery.active_remaining": "0dcc38568ad5018b",
    "faust.tables.recovery.Recovery._slurp_changelogs": "7825c7e50f766d5a",
    "faust.tables.manager.TableManager.recovery": "f0bf5de78b4c3d23",
    "faust.tables.manager.TableManager.on_start": "365dd25fbc0e0684",
    # tables.py: no changelog send of its own; the hook before recovery; the store's current event
    "faust.tables.table.Table.on_key_set": "a370e35ca55c2c7e",
    "faust.tables.base.Collection.on_rebalance": "0812ad692171a8fd",
    "faust.tables.base.Collection._on_changelog_sent": "60122c86a120d82c",
    "faust.stores.rocksdb.Store._set": "4227e561e288d941",
    # rebalance.py
    "faust.tables.recovery.Recovery._set_recovery_started": "bcfebf81ae13fc75",
    "aiokafka.consumer.group_coordinator.GroupCoordinator.request_rejoin": "f70a261c91c38cb5",
    # ... handed to the consumer thread without waiting (mode-streaming, Faust's service library)
    "mode.threads.QueueServiceThread.cast_thread": "32489f1ee4f80e67",
    "mode.threads.MethodQueue.cast": "fc61b3821fed821f",
    # rebalance.py group_member: the coordinator's membership fields, read as Faust reads the generation
    "faust.transport.drivers.aiokafka.ConsumerRebalanceListener.on_partitions_assigned": "1c1f8406ad3698a6",
    "aiokafka.consumer.group_coordinator.GroupCoordinator.__init__": "9e729f077efc4f3a",
    "aiokafka.consumer.group_coordinator.GroupCoordinator.reset_generation": "537aa37c531b4de9",
    "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread._ensure_consumer": "ff4a4c693b7ec63f",
    # commands.py
    "faust.cli.base.AppCommand.as_click_command": "b9f15fb627124b65",
    # assignor.py: the URL assertion is the last statement, after the assignment is taken
    "faust.assignor.partition_assignor.PartitionAssignor.on_assignment": "72f34bf053d696b5",
    # serializers.py: bytes skipped unless the codec is ours
    "faust.serializers.registry.Registry.dumps_value": "42c1fc28dd371ead",
    # orders/app.py: the runtime (and the monitor) built before Faust reads app.monitor
    "faust.app.base.App.on_init_dependencies": "7621a70a9b01f93f",
}
