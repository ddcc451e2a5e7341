"""Consumer groups through unmodified clients: rebalances, commits with
metadata, resuming after a restart, and group administration."""

import asyncio
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition as CTopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition, OffsetAndMetadata

from conftest import wait_for


def produce(bootstrap, topic, count, prefix="m"):
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(count):
        producer.produce(topic, key=str(i), value=f"{prefix}-{i}")
    assert producer.flush(30) == 0


def group_consumer(bootstrap, group, **extra):
    config = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
              "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
    config.update(extra)
    return Consumer(config)


def test_a_group_of_three_rebalances_when_one_leaves_and_reads_everything_once(freshet):
    admin = AdminClient({"bootstrap.servers": freshet.bootstrap})
    admin.create_topics([NewTopic("orders", num_partitions=6)])["orders"].result(10)
    consumers = [group_consumer(freshet.bootstrap, "g3") for _ in range(3)]
    for consumer in consumers:
        consumer.subscribe(["orders"])

    seen = []

    def take(consumer, message):
        if message is not None and not message.error():
            seen.append(message.value().decode())
            try:
                consumer.commit(message=message, asynchronous=False)
            except KafkaException as error:
                # A commit during a rebalance is refused; the next one covers it.
                assert error.args[0].code() in (KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION,
                                                KafkaError._NO_OFFSET), error

    def assignments(members):
        for consumer in members:
            take(consumer, consumer.poll(0.1))
        return sorted(len(c.assignment()) for c in members)

    wait_for(lambda: assignments(consumers) == [2, 2, 2], "six partitions spread over three members")
    produce(freshet.bootstrap, "orders", 300)

    def drain(members, until):
        deadline = time.monotonic() + 30
        while len(set(seen)) < until and time.monotonic() < deadline:
            for consumer in members:
                take(consumer, consumer.poll(0.1))

    drain(consumers, 150)
    consumers[2].close()
    rest = consumers[:2]
    wait_for(lambda: assignments(rest) == [3, 3], "the two remaining members take over the partitions")
    drain(rest, 300)
    produce(freshet.bootstrap, "orders", 30, prefix="late")
    drain(rest, 330)
    for consumer in rest:
        consumer.close()
    # At-least-once: a rebalance may repeat messages whose commit it
    # refused, and nothing is ever skipped.
    assert set(seen) == {f"m-{i}" for i in range(300)} | {f"late-{i}" for i in range(30)}
    assert len(seen) - len(set(seen)) <= 12, len(seen) - len(set(seen))


def test_consumers_resume_from_committed_offsets_after_a_restart_and_after_sigkill(freshet):
    produce(freshet.bootstrap, "resume", 100)
    consumer = group_consumer(freshet.bootstrap, "resumers")
    consumer.subscribe(["resume"])
    got = []
    wait_for(lambda: (lambda m: m is not None and not m.error() and got.append(m))(consumer.poll(0.2)) or len(got) >= 40,
             "forty messages")
    last = got[-1]
    consumer.commit(offsets=[CTopicPartition("resume", last.partition(), last.offset() + 1, metadata="checkpoint-7")],
                    asynchronous=False)
    consumer.close()

    for restart in ("sigterm", "sigkill"):
        if restart == "sigterm":
            freshet.stop()
        else:
            freshet.kill9()
        freshet.start()
        probe = group_consumer(freshet.bootstrap, "resumers")
        committed = probe.committed([CTopicPartition("resume", 0)], timeout=10)[0]
        assert committed.offset == last.offset() + 1
        assert committed.metadata == "checkpoint-7"
        probe.subscribe(["resume"])
        first = None
        deadline = time.monotonic() + 30
        while first is None and time.monotonic() < deadline:
            message = probe.poll(0.2)
            if message is not None and not message.error():
                first = message
        probe.close()
        assert first.offset() == last.offset() + 1, f"after {restart}"


def test_kafka_python_and_aiokafka_groups_commit_and_list(freshet):
    producer = KafkaProducer(bootstrap_servers=freshet.bootstrap)
    for i in range(20):
        producer.send("kpg", f"{i}".encode())
    producer.close()

    consumer = KafkaConsumer("kpg", bootstrap_servers=freshet.bootstrap, group_id="kp-group",
                             auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=10000)
    values = []
    for message in consumer:
        values.append(message.value.decode())
        if len(values) == 20:
            break
    consumer.commit({TopicPartition("kpg", 0): OffsetAndMetadata(20, "done", -1)})
    consumer.close()
    assert values == [str(i) for i in range(20)]

    async def aio():
        from aiokafka import AIOKafkaConsumer
        aio_consumer = AIOKafkaConsumer("kpg", bootstrap_servers=freshet.bootstrap, group_id="kp-group",
                                        auto_offset_reset="earliest", enable_auto_commit=False)
        await aio_consumer.start()
        try:
            position = None
            deadline = time.monotonic() + 30
            while not aio_consumer.assignment() and time.monotonic() < deadline:
                await aio_consumer.getmany(timeout_ms=200)
            position = await aio_consumer.position(TopicPartition("kpg", 0))
            committed = await aio_consumer.committed(TopicPartition("kpg", 0))
        finally:
            await aio_consumer.stop()
        return position, committed

    position, committed = asyncio.run(asyncio.wait_for(aio(), 60))
    assert (position, committed) == (20, 20)

    admin = KafkaAdminClient(bootstrap_servers=freshet.bootstrap)
    assert "kp-group" in [group["group_id"] for group in admin.list_groups()]
    described = admin.describe_groups(["kp-group"])["kp-group"]
    assert described["group_state"] == "Empty", described
    offsets = admin.list_group_offsets({"kp-group": None})["kp-group"]
    assert offsets[TopicPartition("kpg", 0)].offset == 20
    assert offsets[TopicPartition("kpg", 0)].metadata == "done"
    outcome = admin.delete_groups(["kp-group", "never-existed"])
    assert outcome["never-existed"] == "GroupIdNotFoundError"
    assert outcome["kp-group"] == "OK", outcome
    assert "kp-group" not in [group["group_id"] for group in admin.list_groups()]
    admin.close()


def test_a_static_member_restarting_gets_its_partitions_back_without_a_rebalance(freshet):
    admin = AdminClient({"bootstrap.servers": freshet.bootstrap})
    admin.create_topics([NewTopic("static", num_partitions=4)])["static"].result(10)
    extra = {"group.instance.id": "pod-a", "session.timeout.ms": 30000}
    first = group_consumer(freshet.bootstrap, "statics", **extra)
    other = group_consumer(freshet.bootstrap, "statics", **{"group.instance.id": "pod-b", "session.timeout.ms": 30000})
    revoked = []
    first.subscribe(["static"])
    other.subscribe(["static"], on_revoke=lambda consumer, partitions: revoked.append(len(partitions)))

    def assigned(consumers):
        for consumer in consumers:
            consumer.poll(0.1)
        return sorted(len(c.assignment()) for c in consumers)

    wait_for(lambda: assigned([first, other]) == [2, 2], "two static members sharing four partitions")
    before = sorted(p.partition for p in first.assignment())
    revoked.clear()
    # A static member closing does not leave the group (KIP-345): it comes
    # back under the same instance id and takes its old partitions.
    first.close()
    again = group_consumer(freshet.bootstrap, "statics", **extra)
    again.subscribe(["static"])
    wait_for(lambda: assigned([again, other]) == [2, 2], "the restarted member's partitions back")
    assert sorted(p.partition for p in again.assignment()) == before
    described = admin.describe_consumer_groups(["statics"])["statics"].result(10)
    assert len(described.members) == 2
    assert {m.group_instance_id for m in described.members} == {"pod-a", "pod-b"}
    assert [n for n in revoked if n] == [], "the other member kept its partitions throughout"
    again.close()
    other.close()
