"""The read port: ClickHouse's HTTP interface, read-only, one tenant per token (`http`); the reader
that runs checked SQL on the embedded engine (`reader`), the check itself (`guard`, `allowlist`,
`functions.txt`), Native output for each client revision (`native`), the same read-only path as a
client for commands (`client`), and tenant readers on a server (`server_readers`).
docs/security.md says what each part guarantees."""
