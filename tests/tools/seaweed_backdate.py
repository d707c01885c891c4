#!/usr/bin/env python3
"""Test tool: make a SeaweedFS S3 object look N days old.

S3 lifecycle rules count whole days (at least 1), so a test cannot wait for
them. Like SeaweedFS's own lifecycle tests, this rewrites the object's filer
entry (mtime and crtime) through the filer's gRPC API. Only grpcio is
needed: the few protobuf fields involved are encoded by hand.

usage: seaweed_backdate.py FILER_GRPC_ADDR BUCKET KEY DAYS
"""
import sys
import time

import grpc


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def fields(buf):
    """(number, wire type, raw bytes of the whole field, payload) for each field."""
    i = 0
    while i < len(buf):
        start = i
        key, i = read_varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = read_varint(buf, i)
            payload = value
        elif wire == 1:
            payload, i = buf[i:i + 8], i + 8
        elif wire == 2:
            length, i = read_varint(buf, i)
            payload, i = buf[i:i + length], i + length
        elif wire == 5:
            payload, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        yield number, wire, buf[start:i], payload


def field_bytes(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def field_varint(number, value):
    return varint(number << 3) + varint(value)


def main():
    addr, bucket, key, days = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    directory, _, name = f"/buckets/{bucket}/{key}".rpartition("/")
    channel = grpc.insecure_channel(addr)
    lookup = channel.unary_unary("/filer_pb.SeaweedFiler/LookupDirectoryEntry")
    update = channel.unary_unary("/filer_pb.SeaweedFiler/UpdateEntry")
    request = field_bytes(1, directory.encode()) + field_bytes(2, name.encode())
    response = lookup(request, timeout=10)
    entry = next(p for n, w, _, p in fields(response) if n == 1)
    then = int(time.time() - days * 86400)
    new_entry = bytearray()
    for number, wire, raw, payload in fields(entry):
        if number == 4:  # FuseAttributes: mtime = 2, crtime = 6 (seconds)
            attrs = bytearray()
            for n, w, r, _ in fields(payload):
                if n not in (2, 6):
                    attrs += r
            attrs += field_varint(2, then) + field_varint(6, then)
            new_entry += field_bytes(4, bytes(attrs))
        else:
            new_entry += raw
    update(field_bytes(1, directory.encode()) + field_bytes(2, bytes(new_entry)), timeout=10)
    print(f"{directory}/{name}: mtime set {days} days back")


if __name__ == "__main__":
    main()
