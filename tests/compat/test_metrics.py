"""`/metrics` of the real binary: what Kafka clients did shows up, and the
text passes `promtool check metrics`."""

import re
import subprocess
import urllib.request

from confluent_kafka import Consumer, Producer


def scrape(freshet, accept=None):
    request = urllib.request.Request(f"http://127.0.0.1:{freshet.http_port}/metrics")
    if accept:
        request.add_header("Accept", accept)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers["Content-Type"], response.read().decode()


def sample(text, name, **labels):
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        metric, value = line.rsplit(" ", 1)
        if metric.split("{")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', metric))
        if all(found.get(k) == str(v) for k, v in labels.items()):
            return float(value)
    raise AssertionError(f"{name} {labels} not in /metrics")


def test_metrics_show_produce_consume_lag_and_fsync_and_pass_promtool(freshet):
    producer = Producer({"bootstrap.servers": freshet.bootstrap, "acks": "all"})
    for i in range(40):
        producer.produce("metered", value=f"v{i}")
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": freshet.bootstrap, "group.id": "meter", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe(["metered"])
    read = 0
    while read < 30:
        message = consumer.poll(1.0)
        if message is not None and not message.error():
            read += 1
            if read == 30:
                consumer.commit(message=message, asynchronous=False)
    consumer.close()

    content_type, text = scrape(freshet)
    assert content_type.startswith("text/plain; version=0.0.4")
    assert sample(text, "freshet_kafka_records_in_total", topic="metered") == 40
    assert sample(text, "freshet_kafka_records_out_total", topic="metered") >= 30
    assert sample(text, "freshet_kafka_consumer_group_lag", group="meter", topic="metered", partition=0) == 10
    assert sample(text, "freshet_kafka_request_duration_seconds_count", api="Produce") >= 1
    assert sample(text, "freshet_log_fsync_duration_seconds_count") >= 1
    assert sample(text, "freshet_log_partition_end_offset", topic="metered", partition=0) == 40
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    content_type, text = scrape(freshet, accept="application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert text.rstrip().endswith("# EOF")
