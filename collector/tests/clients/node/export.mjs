// Exports spans through an official OpenTelemetry JS exporter and exits non-zero unless the
// collector acknowledged them. Usage: node export.mjs PROTOCOL URL SERVICE COUNT [gzip]
// (PROTOCOL: http/protobuf, http/json or grpc; the token comes from OTEL_EXPORTER_OTLP_HEADERS).
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { resourceFromAttributes } from "@opentelemetry/resources";

const [protocol, url, service, count, compression] = process.argv.slice(2);
const modules = {
  "http/protobuf": "@opentelemetry/exporter-trace-otlp-proto",
  "http/json": "@opentelemetry/exporter-trace-otlp-http",
  grpc: "@opentelemetry/exporter-trace-otlp-grpc",
};
const { OTLPTraceExporter } = await import(modules[protocol]);
const exporter = new OTLPTraceExporter({ url, compression: compression === "gzip" ? "gzip" : "none" });

const memory = new InMemorySpanExporter();
const provider = new BasicTracerProvider({
  // The payload claims another tenant: the token decides.
  resource: resourceFromAttributes({ "service.name": service, "clinical.tenant.id": "general" }),
  spanProcessors: [new SimpleSpanProcessor(memory)],
});
const tracer = provider.getTracer("client-matrix");
for (let i = 0; i < Number(count); i++) {
  tracer.startSpan(`node span ${i}`, { attributes: { "clinical.workflow.stage": "decide" } }).end();
}
await provider.forceFlush();

const result = await new Promise((resolve) => exporter.export(memory.getFinishedSpans(), resolve));
await exporter.shutdown();
if (result.code !== 0) {
  console.error(`export failed: ${result.error}`);
  process.exit(1);
}
console.log(`exported ${memory.getFinishedSpans().length}`);
