"""The store: the schema (`schema`, frozen `migrations`), the engine-side ingest pipeline
(`pipeline`, its PHI SQL in `phi_sql`, the same rules as OTTL in `ottl`), and the embedded store's
ownership and connection (`embedded`)."""
