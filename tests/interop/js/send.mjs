// Sends two traces to casefile with the OpenTelemetry JS SDK over OTLP/HTTP JSON and
// prints their ids. usage: node send.mjs http://127.0.0.1:PORT
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { SpanStatusCode, context, trace } from '@opentelemetry/api';

const endpoint = process.argv[2];
const exporter = new OTLPTraceExporter({ url: `${endpoint}/v1/traces` });
const provider = new BasicTracerProvider({
  resource: resourceFromAttributes({ 'service.name': 'js-shop' }),
  spanProcessors: [new BatchSpanProcessor(exporter)],
});
const tracer = provider.getTracer('interop');

const root = tracer.startSpan('POST /checkout', { attributes: { 'user.id': 'usr_js1', 'user.tier': 'premium' } });
const ctx = trace.setSpan(context.active(), root);
const child = tracer.startSpan('reserve stock', {}, ctx);
child.setAttribute('items', 3);
child.end();
root.end();
const kept = root.spanContext().traceId;

const plain = tracer.startSpan('GET /health');
plain.setStatus({ code: SpanStatusCode.OK });
plain.end();
const dropped = plain.spanContext().traceId;

await provider.forceFlush();
await provider.shutdown();
console.log(JSON.stringify({ kept, dropped }));
