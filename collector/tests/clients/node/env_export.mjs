// One workflow (a root span and a failed decide stage with an exception event) through the
// OpenTelemetry Node SDK configured by the standard environment variables alone, as a Node
// service deployed beside clinotel is: OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES and
// OTEL_EXPORTER_OTLP_{PROTOCOL,ENDPOINT,HEADERS,COMPRESSION}. Exits non-zero when the SDK logged an
// error (a refused or failed export). Usage: node env_export.mjs
import { DiagLogLevel, SpanStatusCode, diag, trace } from "@opentelemetry/api";
import { NodeSDK } from "@opentelemetry/sdk-node";

// The resource detectors (host, process) settle asynchronously; the SDK reports reading them
// early as an error, although the exporter waits for them: not an export failure.
const UNSETTLED = "Accessing resource attributes before async attributes settled";
const errors = [];
const record = (...args) => {
  if (String(args[0]).startsWith(UNSETTLED)) return;
  errors.push(args.join(" "));
  console.error(...args);
};
diag.setLogger({ error: record, warn: () => {}, info: () => {}, debug: () => {}, verbose: () => {} }, DiagLogLevel.ERROR);

const sdk = new NodeSDK();
sdk.start();
const tracer = trace.getTracer("client-matrix-env");
tracer.startActiveSpan("workflow triage", (root) => {
  root.setAttribute("clinical.workflow.kind", "triage");
  tracer.startActiveSpan("decide", (decide) => {
    decide.setAttributes({
      "clinical.workflow.stage": "decide",
      "clinical.decision.source": "fallback",
      "clinical.decision.confidence": 0.5,
    });
    decide.addEvent("exception", { "exception.type": "TimeoutError", "exception.message": "model timed out" });
    decide.setStatus({ code: SpanStatusCode.ERROR, message: "model timed out" });
    decide.end();
  });
  root.end();
});
await sdk.shutdown();
if (errors.length > 0) process.exit(1);
console.log("exported 2");
