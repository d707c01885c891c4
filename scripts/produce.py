#!/usr/bin/env python3
"""Send images to imgpipe's Kafka topic with a standard client (confluent-kafka).

    pip install confluent-kafka
    python3 scripts/produce.py --brokers 127.0.0.1:9092 --topic images photo.jpg ...
    python3 scripts/produce.py --form envelope photo.jpg        # JSON + base64
    python3 scripts/produce.py --form claim-check s3://bucket/key/photo.jpg

Forms (see README, "Kafka"):
  raw          value = the image bytes; header content-type; key = --key or the file name
  envelope     value = {"key", "content_type", "data_base64"}
  claim-check  value = {"s3_uri": "s3://bucket/key"} for images larger than the
               broker's message limit; the bridge copies the object into the lake
The key (or the image-id header) is the dedup key: sending the same image
again under the same key makes no second image.
"""

import argparse
import base64
import json
import mimetypes
import os
import sys

from confluent_kafka import Producer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--brokers", default=os.environ.get("IMGPIPE_KAFKA_BROKERS", "127.0.0.1:9092"))
    ap.add_argument("--topic", default=os.environ.get("IMGPIPE_KAFKA_TOPIC", "images"))
    ap.add_argument("--form", choices=["raw", "envelope", "claim-check"], default="raw")
    ap.add_argument("--key", help="dedup key (default: the file or object name)")
    ap.add_argument("--no-key", action="store_true", help="send without a key (dedup by offset)")
    ap.add_argument("items", nargs="+", help="image files, or s3:// URIs for --form claim-check")
    args = ap.parse_args()

    # Up to 16 MiB per message (the broker must allow it too); larger images
    # go by claim-check.
    producer = Producer({"bootstrap.servers": args.brokers, "acks": "all",
                         "message.max.bytes": 16 * 1024 * 1024})
    failures = []

    def delivered(err, msg):
        if err is not None:
            failures.append(str(err))

    for item in args.items:
        key = None if args.no_key else (args.key or os.path.basename(item))
        headers = []
        if args.form == "claim-check":
            value = json.dumps({"s3_uri": item}).encode()
        else:
            with open(item, "rb") as f:
                data = f.read()
            content_type = mimetypes.guess_type(item)[0] or "application/octet-stream"
            if args.form == "raw":
                value = data
                headers.append(("content-type", content_type.encode()))
            else:
                value = json.dumps({
                    "key": key,
                    "content_type": content_type,
                    "data_base64": base64.b64encode(data).decode(),
                }).encode()
        producer.produce(args.topic, value=value, key=key, headers=headers, on_delivery=delivered)
        producer.poll(0)
    producer.flush(30)
    if failures:
        print("\n".join(failures), file=sys.stderr)
        return 1
    print(f"sent {len(args.items)} message(s) to {args.topic}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
