"""Python's cyclic garbage collector, set for a worker that keeps tens of thousands of records alive at once.

CPython runs a young collection whenever the container objects alive have
grown by 700 since the last one; what survives two of them is promoted, and
a full collection (every object not frozen) follows once the promoted ones
add a quarter to what the last full one kept. A worker draining a backlog
holds up to INBOX_BUDGET_RECORDS records in its partitions' inboxes, and an
order and its outcome for every record applied since the last commit:
150,000 to 210,000 objects, each alive a second or so, long enough to be
promoted. With the defaults, a drain of 1,000,000 orders on 6 partitions
spent 3.5 s of its 14.2 s of CPU in the collector: 54 full collections of
about 45 ms each, 608 middle and 6,692 young ones (measured with
`gc.callbacks` in the worker, `bench throughput --orders 1000000`).

A young threshold of YOUNG_THRESHOLD: records are freed by their reference
counts long before that many objects pile up, so almost nothing is promoted
and a full collection is rare. The same drain then spent 0.67 s in 18 young
collections and no full one (84,280 orders/s against 68,198); at 192
partitions 0.56 s against 5.1 s (69,643 orders/s against 57,905). A young
collection then looks at up to about that many objects (30-40 ms), and only
while a backlog grows; a worker that keeps up rarely reaches it.
"""
from __future__ import annotations

import gc

#: Container objects alive beyond the last young collection that start the next (CPython's default: 700).
YOUNG_THRESHOLD = 100_000
#: Young collections per middle one, and middle ones per full one (CPython's defaults).
OLDER_THRESHOLDS = (10, 10)


def settle_after_start() -> None:
    """Once the worker has started: freeze what it built (modules, Faust's services, the table), which lives
    as long as the process and so need never be scanned again, and raise the young threshold."""
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
