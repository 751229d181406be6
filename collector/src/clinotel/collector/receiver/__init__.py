"""Receiving OTLP: the transport-free export (`export`: validate, count, append to the log, answer)
and the two transports that call it (`http`: OTLP/HTTP, protobuf and JSON; `grpc`: OTLP/gRPC)."""
