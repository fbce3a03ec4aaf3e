"""A downstream OTLP/gRPC trace receiver on the Python protobuf runtime, which validates as
it decodes, as most receivers do: strings must be UTF-8, messages nested at most 100 deep,
requests at most 4 MiB (grpc's default receive limit). A request it cannot decode is
refused by grpc itself (INTERNAL, or RESOURCE_EXHAUSTED when too large).

usage: receive.py
Prints {"port": N} once listening on 127.0.0.1, then one JSON line per accepted request:
{"spans": [[trace_id_hex, span_id_hex, name], ...]}. Stops when stdin closes.
"""
import json
import sys
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)


# Requests are answered on several threads: one whole line at a time on stdout.
OUT = threading.Lock()


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        spans = [
            [s.trace_id.hex(), s.span_id.hex(), s.name]
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
        ]
        line = json.dumps({"spans": spans}) + "\n"
        with OUT:
            sys.stdout.write(line)
            sys.stdout.flush()
        return trace_service_pb2.ExportTraceServiceResponse()


server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Receiver(), server)
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(json.dumps({"port": port}), flush=True)
sys.stdin.read()
server.stop(0)
