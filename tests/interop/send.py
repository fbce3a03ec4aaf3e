"""Sends two traces to casefile with the OpenTelemetry Python SDK and prints their ids.

usage: send.py grpc|http ENDPOINT
One trace has an error on a child span (the `errors` policy keeps it); the other is a
plain fast trace (dropped). Prints {"kept": hex, "dropped": hex} as JSON.
"""
import json
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode

protocol, endpoint = sys.argv[1], sys.argv[2]
if protocol == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
else:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(endpoint=endpoint + "/v1/traces")

provider = TracerProvider(resource=Resource.create({"service.name": "py-shop"}))
provider.add_span_processor(BatchSpanProcessor(exporter))
tracer = provider.get_tracer("interop")

with tracer.start_as_current_span("POST /checkout", attributes={"user.id": "usr_py1"}) as root:
    kept = format(root.get_span_context().trace_id, "032x")
    with tracer.start_as_current_span("charge card") as child:
        child.set_status(Status(StatusCode.ERROR, "card declined"))
    with tracer.start_as_current_span("send receipt"):
        pass

with tracer.start_as_current_span("GET /health") as root:
    dropped = format(root.get_span_context().trace_id, "032x")

ok = provider.force_flush(10_000)
provider.shutdown()
print(json.dumps({"kept": kept, "dropped": dropped, "flushed": ok}))
