#!/usr/bin/python3
"""An outside analytics consumer: reads CRM topics with confluent-kafka and
decodes each crm.v1.EventEnvelope and its payload.

    /usr/bin/python3 examples/python/consume_events.py --brokers "$(cat .run/broker.addr)" \\
        --topics crm.leads.v1,crm.sales.v1 --from-beginning --max 20

Routing needs no decoding: the CloudEvents headers (ce_type, ce_source,
ce_id, ce_time) say what each message is; the key is the customer_id.
"""
import argparse
import pathlib
import subprocess
import sys
import tempfile
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[2]


def generate_stubs() -> str:
    out = tempfile.mkdtemp(prefix="crm-py-")
    protos = sorted(str(p) for p in (ROOT / "proto" / "crm" / "v1").glob("*.proto"))
    subprocess.run(["protoc", f"-I{ROOT / 'proto'}", f"--python_out={out}", *protos], check=True)
    return out


sys.path.insert(0, generate_stubs())
from confluent_kafka import Consumer  # noqa: E402
from google.protobuf import json_format, symbol_database  # noqa: E402
from crm.v1 import analytics_pb2, envelope_pb2, leads_pb2, sales_pb2, service_desk_pb2  # noqa: E402,F401


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topics", default="crm.leads.v1,crm.sales.v1,crm.service-desk.v1,crm.analytics.v1")
    ap.add_argument("--group", default=f"example-{uuid.uuid4().hex[:8]}")
    ap.add_argument("--from-beginning", action="store_true")
    ap.add_argument("--max", type=int, default=0, help="stop after this many events (0 = never)")
    ap.add_argument("--idle-seconds", type=float, default=0, help="stop after this long without events")
    args = ap.parse_args()

    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": args.group,
        "auto.offset.reset": "earliest" if args.from_beginning else "latest",
        "enable.auto.commit": True,
    })
    consumer.subscribe(args.topics.split(","))
    db = symbol_database.Default()
    seen = idle = 0.0
    try:
        while args.max == 0 or seen < args.max:
            msg = consumer.poll(0.5)
            if msg is None:
                idle += 0.5
                if args.idle_seconds and idle >= args.idle_seconds:
                    break
                continue
            idle = 0
            if msg.error():
                print(f"error: {msg.error()}", file=sys.stderr)
                continue
            headers = {k: v.decode() for k, v in (msg.headers() or [])}
            envelope = envelope_pb2.EventEnvelope()
            envelope.ParseFromString(msg.value())
            type_name = envelope.payload.TypeName()
            payload = db.GetSymbol(type_name)()
            envelope.payload.Unpack(payload)
            print(f"{msg.topic()}[{msg.partition()}]@{msg.offset()} key={msg.key().decode()} "
                  f"{headers.get('ce_type')} v{envelope.stream_version} {envelope.stream}")
            print("   ", json_format.MessageToJson(payload, indent=None))
            seen += 1
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
