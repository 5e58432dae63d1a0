"""Which incarnation of a Kafka partition the lake's progress belongs to.

A Kafka offset names a record only within one incarnation of a topic's log. A topic deleted and
recreated, or a broker that lost its log (Tansu on memory storage, a wiped disk), starts again at
offset 0; an unclean leader election truncates the log and reuses offsets. Progress stored under
``kafka:<group>:<topic>:<partition>`` alone would then skip the new records at offsets the lake
already holds. So progress is kept per incarnation:

    kafka:<group>:<topic>:<partition>[:<topic id>][:e<epoch>]

- ``<topic id>`` is the UUID the broker reports for the topic (Kafka ≥ 2.8, Tansu). A recreated
  topic has a new id, hence a new app id with no progress: it is read from its beginning.
- ``e<epoch>`` counts resets the topic id cannot show (a truncated log under the same id, or a
  broker that reports no topic ids): the collector found its position out of the log's range and
  started a new epoch from the partition's beginning. Epoch 0 has no suffix.
- Progress written before topic ids were tracked (no id in the app id) is adopted once for the
  current id, after checking that the log still holds the last record the lake has.

Reading from a partition's beginning never duplicates events (the lake drops event ids it holds);
a dead-lettered record of a truncated log can be recorded once per epoch (docs/reliability.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest.lake import Lake, Progress

MAX_EPOCHS = 10_000


def base_id(group: str, topic: str, partition: int) -> str:
    return f"kafka:{group}:{topic}:{partition}"


def app_id(group: str, topic: str, partition: int, topic_id: str | None = None, epoch: int = 0) -> str:
    """The lake app id of one incarnation of a partition."""
    aid = base_id(group, topic, partition)
    if topic_id:
        aid += f":{topic_id}"
    if epoch:
        aid += f":e{epoch}"
    return aid


@dataclass(frozen=True)
class Resume:
    """Where a collector starts reading a partition and under which app id it commits."""

    app_id: str
    topic_id: str | None
    epoch: int
    floor: int | None       # records at or below this offset are in the lake already (None: none are)
    verify: bool            # seek to ``floor`` itself: fetching it proves the log still reaches it
    adopted_from: str | None = None  # a legacy app id whose progress this incarnation continues

    @property
    def seek_to(self) -> int | None:
        """The offset to seek to (None: the partition's beginning)."""
        if self.floor is None:
            return None
        return self.floor if self.verify else self.floor + 1


def _latest_epoch(lake: Lake, group: str, topic: str, partition: int, topic_id: str | None) -> tuple[int, Progress]:
    """The highest epoch with progress in the lake (0 when none has), and its progress."""
    epoch, prog = 0, lake.progress(app_id(group, topic, partition, topic_id, 0))
    for e in range(1, MAX_EPOCHS):
        p = lake.progress(app_id(group, topic, partition, topic_id, e))
        if p.events is None and p.dead_letter is None:
            break
        epoch, prog = e, p
    return epoch, prog


def resolve(lake: Lake, group: str, topic: str, partition: int, topic_id: str | None) -> Resume:
    """Where to resume a partition of the topic incarnation ``topic_id`` (None: the broker has no ids)."""
    epoch, prog = _latest_epoch(lake, group, topic, partition, topic_id)
    aid = app_id(group, topic, partition, topic_id, epoch)
    if prog.resume_after is not None:
        # With a topic id the incarnation is known; without one, fetching the last record the lake
        # has is the check that the log was not reset under us.
        return Resume(aid, topic_id, epoch, prog.resume_after, verify=topic_id is None)
    if topic_id is not None and epoch == 0:
        legacy_epoch, legacy = _latest_epoch(lake, group, topic, partition, None)
        if legacy.resume_after is not None:
            return Resume(aid, topic_id, 0, legacy.resume_after, verify=True,
                          adopted_from=app_id(group, topic, partition, None, legacy_epoch))
    return Resume(aid, topic_id, epoch, None, verify=False)


def next_epoch(r: Resume, group: str, topic: str, partition: int) -> Resume:
    """A new epoch of the same topic id, read from the partition's beginning."""
    return Resume(app_id(group, topic, partition, r.topic_id, r.epoch + 1), r.topic_id, r.epoch + 1, None, verify=False)
