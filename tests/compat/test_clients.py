"""Unmodified Kafka clients against the real freshet binary: kcat
(librdkafka), confluent-kafka, kafka-python and aiokafka."""

import asyncio
import threading
import time

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource as KpConfigResource, ConfigResourceType, NewTopic as KpNewTopic

from conftest import kcat, wait_for

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def read_all(bootstrap, topic, expected, partitions=None):
    """Reads a topic from the start with kafka-python (no group)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
    parts = partitions or sorted(consumer.partitions_for_topic(topic))
    consumer.assign([TopicPartition(topic, p) for p in parts])
    consumer.seek_to_beginning()
    records = []
    deadline = time.monotonic() + 30
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    consumer.close()
    return records


def test_kcat_produces_and_consumes_keys_and_repeated_headers_in_every_codec(freshet):
    for codec in CODECS:
        lines = "".join(f"{codec}-k{i}:{codec}-v{i}\n" for i in range(5))
        kcat("-b", freshet.bootstrap, "-t", "kcat", "-P", "-K:", "-z", codec, "-H", "h=1", "-H", "h=2",
             "-X", "request.required.acks=all", input_text=lines)
    out = kcat("-b", freshet.bootstrap, "-t", "kcat", "-C", "-e", "-f", "%k=%s|%h|%o\n")
    rows = out.strip().splitlines()
    assert len(rows) == 25
    assert rows[0] == "none-k0=none-v0|h=1,h=2|0"
    assert rows[-1] == "zstd-k4=zstd-v4|h=1,h=2|24"


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_idempotent_keyed_produce_with_headers(freshet, codec):
    producer = Producer({"bootstrap.servers": freshet.bootstrap, "enable.idempotence": True, "acks": "all",
                         "compression.type": codec, "linger.ms": 5})
    acked = []
    for i in range(200):
        producer.produce("conf", key=f"key-{i % 7}", value=f"value-{i}", headers=[("h", b"a"), ("h", b"b")],
                         on_delivery=lambda err, msg: acked.append((err, msg.offset())))
    assert producer.flush(30) == 0
    assert [err for err, _ in acked if err] == []
    records = read_all(freshet.bootstrap, "conf", 200)
    assert sorted(r.value.decode() for r in records) == sorted(f"value-{i}" for i in range(200))
    assert all(r.headers == [("h", b"a"), ("h", b"b")] for r in records)


def test_kafka_python_and_aiokafka_produce_and_consume(freshet):
    producer = KafkaProducer(bootstrap_servers=freshet.bootstrap, acks="all", compression_type="gzip")
    for i in range(100):
        producer.send("kp", key=b"k", value=f"kp-{i}".encode(), headers=[("h", b"1"), ("h", b"2")])
    producer.flush()
    producer.close()

    async def aio():
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
        aio_producer = AIOKafkaProducer(bootstrap_servers=freshet.bootstrap, enable_idempotence=True)
        await aio_producer.start()
        for i in range(100):
            await aio_producer.send_and_wait("kp", f"aio-{i}".encode(), key=b"k")
        await aio_producer.stop()
        consumer = AIOKafkaConsumer("kp", bootstrap_servers=freshet.bootstrap, group_id=None,
                                    auto_offset_reset="earliest")
        await consumer.start()
        seen = []
        try:
            while len(seen) < 200:
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    seen.extend(r.value.decode() for r in records)
        finally:
            await consumer.stop()
        return seen

    seen = asyncio.run(asyncio.wait_for(aio(), 60))
    assert seen == [f"kp-{i}" for i in range(100)] + [f"aio-{i}" for i in range(100)]
    records = read_all(freshet.bootstrap, "kp", 200)
    assert records[0].headers == [("h", b"1"), ("h", b"2")]


def test_admin_create_describe_grow_and_delete_topics(freshet):
    admin = AdminClient({"bootstrap.servers": freshet.bootstrap})
    futures = admin.create_topics([NewTopic("orders", num_partitions=3, replication_factor=1,
                                            config={"retention.ms": "3600000", "max.message.bytes": "2000"})])
    futures["orders"].result(10)
    duplicate = admin.create_topics([NewTopic("orders", num_partitions=1)])["orders"]
    with pytest.raises(Exception) as error:
        duplicate.result(10)
    assert error.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    metadata = admin.list_topics(timeout=10)
    assert len(metadata.topics["orders"].partitions) == 3
    described = admin.describe_configs([ConfigResource("topic", "orders")])
    configs = list(described.values())[0].result(10)
    assert configs["retention.ms"].value == "3600000"
    assert configs["max.message.bytes"].value == "2000"
    admin.create_partitions([NewPartitions("orders", 5)])["orders"].result(10)
    assert len(admin.list_topics(timeout=10).topics["orders"].partitions) == 5
    admin.delete_topics(["orders"])["orders"].result(10)
    assert "orders" not in admin.list_topics(timeout=10).topics

    kp_admin = KafkaAdminClient(bootstrap_servers=freshet.bootstrap)
    kp_admin.create_topics([KpNewTopic("kp-admin", num_partitions=2, replication_factor=1,
                                       topic_configs={"retention.bytes": "1000000"})])
    result = kp_admin.describe_configs([KpConfigResource(ConfigResourceType.TOPIC, "kp-admin")])
    assert result["topic"]["kp-admin"]["retention.bytes"]["value"] == "1000000"
    kp_admin.delete_topics(["kp-admin"])
    kp_admin.close()


def test_a_batch_over_max_message_bytes_gets_message_too_large_and_nothing_is_stored(freshet):
    admin = AdminClient({"bootstrap.servers": freshet.bootstrap})
    admin.create_topics([NewTopic("small", num_partitions=1, config={"max.message.bytes": "1000"})])["small"].result(10)
    producer = Producer({"bootstrap.servers": freshet.bootstrap, "compression.type": "none"})
    errors = []
    producer.produce("small", value=b"x" * 5000, on_delivery=lambda err, msg: errors.append(err))
    producer.flush(30)
    producer.produce("small", value=b"fits", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(30)
    codes = sorted((e.code() if e else 0) for e in errors)
    assert codes == sorted([0, KafkaError.MSG_SIZE_TOO_LARGE]), errors
    records = read_all(freshet.bootstrap, "small", 1)
    assert [r.value for r in records] == [b"fits"]


def test_offsets_for_times_finds_the_first_record_at_or_after_a_timestamp(freshet):
    producer = KafkaProducer(bootstrap_servers=freshet.bootstrap, linger_ms=0)
    base = 1_700_000_000_000
    for i in range(50):
        producer.send("times", value=f"{i}".encode(), timestamp_ms=base + i * 1000).get(10)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=freshet.bootstrap, group_id=None)
    tp = TopicPartition("times", 0)
    found = consumer.offsets_for_times({tp: base + 20_500})[tp]
    assert (found.offset, found.timestamp) == (21, base + 21_000)
    assert consumer.offsets_for_times({tp: base + 999_999})[tp] is None
    assert consumer.beginning_offsets([tp])[tp] == 0
    assert consumer.end_offsets([tp])[tp] == 50
    consumer.close()


def test_sigkill_during_acks_all_produce_loses_and_duplicates_nothing_acknowledged(freshet):
    sigkill_during_produce(freshet, "all")


@pytest.mark.parametrize("acks", ["all", "1"])
def test_sigkill_during_produce_with_direct_log_writes_loses_nothing_acknowledged(freshet_direct, acks):
    sigkill_during_produce(freshet_direct, acks)


def sigkill_during_produce(freshet, acks):
    """Kills the server with SIGKILL while a producer sends, restarts it,
    and reads back: every acknowledged record is there, and with an
    idempotent producer (acks=all) none twice."""
    idempotent = acks == "all"
    producer = Producer({"bootstrap.servers": freshet.bootstrap, "enable.idempotence": idempotent, "acks": acks,
                         "linger.ms": 2, "message.timeout.ms": 60000, "retry.backoff.ms": 50})
    acked = []
    lock = threading.Lock()

    def delivered(err, msg):
        if err is None:
            with lock:
                acked.append(msg.value().decode())

    sent = 0
    def produce(count):
        nonlocal sent
        for _ in range(count):
            producer.produce("crash", key=str(sent % 3), value=f"m-{sent}", on_delivery=delivered)
            sent += 1
            producer.poll(0)

    produce(3000)
    wait_for(lambda: producer.poll(0.05) is not None and len(acked) >= 1000, "a thousand acknowledgements")
    produce(2000)
    freshet.kill9()
    produce(1000)
    freshet.start()
    produce(1000)
    assert producer.flush(60) == 0
    with lock:
        acknowledged = list(acked)
    assert len(acknowledged) == sent == 7000
    expected = len(acknowledged)
    if not idempotent:
        # Retries without idempotence may store a record twice: read all.
        consumer = KafkaConsumer(bootstrap_servers=freshet.bootstrap, group_id=None)
        parts = [TopicPartition("crash", p) for p in consumer.partitions_for_topic("crash")]
        expected = sum(consumer.end_offsets(parts).values())
        consumer.close()
    records = read_all(freshet.bootstrap, "crash", expected)
    values = [r.value.decode() for r in records]
    if idempotent:
        assert len(values) == len(set(values)), "a record was stored twice"
    assert set(acknowledged) <= set(values), "an acknowledged record was lost"
