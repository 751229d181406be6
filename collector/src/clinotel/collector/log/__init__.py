"""The write-ahead log: the acknowledgement and the persistent queue (`wal`), and the record format
its segments hold, which is also what ClickHouse reads them with (`record`)."""
