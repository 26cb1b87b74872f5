"""Faust's partition assignor, for workers that come back under the same WORKER_ID with another web URL.

A static member (WORKER_ID) that restarts within the session timeout gets its cached assignment back without
a rebalance. Faust's `PartitionAssignor.on_assignment` asserts that the assignment names this worker's web URL;
when the worker came back with another URL (another WEB_HOST or web port) the assertion ends aiokafka's
coordinator routine and the worker hangs, with its partitions assigned and never consumed. Here the
assignment is taken as it is, the mismatch logged once, and the group asked to rebalance, so that the others
learn the new URL (`/average/` reaches the worker there).
"""
from __future__ import annotations

import logging
from typing import Any

from faust.assignor import PartitionAssignor
from faust.assignor.client_assignment import ClientMetadata

log = logging.getLogger("orders")


class RestartTolerantAssignor(PartitionAssignor):
    def on_assignment(self, assignment: Any) -> None:
        try:
            super().on_assignment(assignment)
        except AssertionError:
            metadata = ClientMetadata.loads(self._decompress(assignment.user_data))
            if metadata.url == str(self._url):
                raise  # another of Faust's checks failed: not the case handled here
            log.warning("this worker's web URL is %s, its assignment (kept by the group for its WORKER_ID) names "
                        "%s: asking the group to rebalance so that every worker learns the new one",
                        self._url, metadata.url)
            self.app.consumer._thread._consumer._coordinator.request_rejoin()
