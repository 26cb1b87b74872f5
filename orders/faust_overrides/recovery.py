"""Table recovery that ends at the changelog's last committed record, not at its highwater."""
from __future__ import annotations

from collections import Counter
from typing import Any

from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP


class MarkerAwareRecovery(Recovery):
    async def _build_highwaters(self, consumer: Any, tps: set[TP], destination: Counter, title: str) -> None:
        await super()._build_highwaters(consumer, tps, destination, title)
        hooks = getattr(self.app, "state_hooks", None)
        if hooks is None or title != "active" or not tps:
            return
        by_topic: dict[str, list[int]] = {}
        for tp in tps:
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        for topic, partitions in by_topic.items():
            ends = await hooks.changelog_ends(sorted(partitions))
            for partition in partitions:
                # Faust waits until it has received the record at this offset (it takes highwater - 1).
                destination[TP(topic, partition)] = ends.get(partition, -1)


class MarkerAwareTableManager(TableManager):
    async def on_start(self) -> None:
        """Faust's, without its first second: TableManager.on_start sleeps 1 s so that tables declared while
        the agents start are included; every table of this app is declared when the app is built."""
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = MarkerAwareRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
