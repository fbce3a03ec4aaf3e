"""Sends one real OTLP trace per compression to casefile, each compressed by a library that
is not one of casefile's: CPython's zlib/gzip (C zlib), zstandard (C libzstd bindings),
lz4 (C liblz4 frame bindings), snappy written here from the format description and also by
cramjam (python-snappy's engine); and over gRPC grpcio's own gzip and deflate.

usage: send_compressed.py HTTP_ADDR GRPC_ADDR
The requests are built with the opentelemetry-proto classes: each trace has three spans,
one with an error status (casefile's `errors` policy keeps it). Prints
{"traces": {"<encoding>": trace_id_hex, ...}} as JSON once every request was answered OK.
"""
import gzip
import json
import os
import sys
import urllib.request
import zlib

import cramjam
import grpc
import lz4.frame
import zstandard
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

http_addr, grpc_addr = sys.argv[1], sys.argv[2]


def request(label):
    """An ExportTraceServiceRequest with one three-span trace; returns (request, id hex)."""
    trace_id = os.urandom(16)
    root_id = os.urandom(8)
    spans = []
    for i, name in enumerate([f"POST /{label}", "query db", "render"]):
        span = trace_pb2.Span(
            trace_id=trace_id,
            span_id=root_id if i == 0 else os.urandom(8),
            parent_span_id=b"" if i == 0 else root_id,
            name=name,
            kind=trace_pb2.Span.SPAN_KIND_SERVER if i == 0 else trace_pb2.Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=1_700_000_000_000_000_000 + i,
            end_time_unix_nano=1_700_000_000_050_000_000,
            attributes=[
                common_pb2.KeyValue(
                    key="compression.label",
                    value=common_pb2.AnyValue(string_value=label),
                )
            ]
            # Some bulk so the compressors have something to work on.
            + [
                common_pb2.KeyValue(
                    key=f"http.header.{k}",
                    value=common_pb2.AnyValue(string_value="value-" * 20),
                )
                for k in range(20)
            ],
        )
        if i == 1:
            span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
            span.status.message = "db timeout"
        spans.append(span)
    req = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource_pb2.Resource(
                    attributes=[
                        common_pb2.KeyValue(
                            key="service.name",
                            value=common_pb2.AnyValue(string_value="py-compress"),
                        )
                    ]
                ),
                scope_spans=[trace_pb2.ScopeSpans(spans=spans)],
            )
        ]
    )
    return req, trace_id.hex()


def snappy_framed_cramjam(data):
    c = cramjam.snappy.Compressor()
    c.compress(data)
    return bytes(c.finish())


# cramjam's snappy is built on the same Rust crate casefile decodes with, so snappy is also
# written here from the format descriptions (google/snappy format_description.txt and
# framing_format.txt), independently of any library.
def snappy_block(data):
    out = bytearray()
    v = len(data)
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)

    def literal(a, b):
        n = b - a
        if n == 0:
            return
        if n <= 60:
            out.append((n - 1) << 2)
        else:
            m = n - 1
            nb = (m.bit_length() + 7) // 8
            out.append((59 + nb) << 2)
            out.extend(m.to_bytes(nb, "little"))
        out.extend(data[a:b])

    table, i, lit, n = {}, 0, 0, len(data)
    while i + 4 <= n:
        key = data[i : i + 4]
        cand = table.get(key)
        table[key] = i
        if cand is None or i - cand >= 65536:
            i += 1
            continue
        literal(lit, i)
        length = 4
        while i + length < n and data[cand + length] == data[i + length]:
            length += 1
        offset, rest = i - cand, length
        while rest > 0:  # copies with a 2-byte offset, 1..64 bytes each
            c = min(rest, 64)
            out.append(((c - 1) << 2) | 2)
            out.extend(offset.to_bytes(2, "little"))
            rest -= c
        i += length
        lit = i
    literal(lit, n)
    return bytes(out)


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


CRC32C_TABLE = []
for n in range(256):
    c = n
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    CRC32C_TABLE.append(c)


def snappy_framed(data):
    out = bytearray(b"\xff\x06\x00\x00sNaPpY")
    for at in range(0, len(data), 65536):
        chunk = data[at : at + 65536]
        crc = crc32c(chunk)
        masked = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
        body = masked.to_bytes(4, "little") + snappy_block(chunk)
        out.append(0x00)
        out.extend(len(body).to_bytes(3, "little"))
        out.extend(body)
    return bytes(out)


# Content-Encoding -> compressor, with the framing the Collector uses for each name.
HTTP = {
    "gzip": lambda d: gzip.compress(d),
    "zstd": lambda d: zstandard.ZstdCompressor().compress(d),
    "zlib": lambda d: zlib.compress(d),
    "deflate": lambda d: zlib.compress(d, 9),
    "snappy": snappy_block,
    "snappy-cramjam": lambda d: bytes(cramjam.snappy.compress_raw(d)),
    # Collectors before v0.125 sent framed snappy under the name snappy.
    "snappy-framed": snappy_framed,
    "x-snappy-framed": snappy_framed,
    "x-snappy-framed-cramjam": snappy_framed_cramjam,
    "lz4": lambda d: lz4.frame.compress(d),
    "lz4-linked-checksums": lambda d: lz4.frame.compress(
        d, block_linked=True, content_checksum=True, block_size=lz4.frame.BLOCKSIZE_MAX64KB
    ),
}


def zstd_stream(d):
    """A streaming zstd frame (no content size in its header, an 8 MiB window), as Go's
    streaming encoder writes."""
    obj = zstandard.ZstdCompressor(level=19).compressobj()
    return obj.compress(d) + obj.flush()


HTTP["zstd-stream"] = zstd_stream

traces = {}
for label, compress in HTTP.items():
    encoding = label
    for prefix in ("x-snappy-framed", "snappy", "zstd", "lz4"):
        if label.startswith(prefix):
            encoding = prefix
            break
    req, tid = request(label)
    body = compress(req.SerializeToString())
    r = urllib.request.Request(
        f"http://{http_addr}/v1/traces",
        data=body,
        method="POST",
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": encoding},
    )
    with urllib.request.urlopen(r, timeout=10) as resp:
        assert resp.status == 200, (label, resp.status)
    traces[f"http/{label}"] = tid

channel = grpc.insecure_channel(grpc_addr)
stub = trace_service_pb2_grpc.TraceServiceStub(channel)
for name, c in [("gzip", grpc.Compression.Gzip), ("deflate", grpc.Compression.Deflate)]:
    req, tid = request(f"grpc-{name}")
    stub.Export(req, compression=c, timeout=10)
    traces[f"grpc/{name}"] = tid
channel.close()

print(json.dumps({"traces": traces}))
