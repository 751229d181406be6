"""clinotel.instrumentation's implementation. Nothing here is API: import from
`clinotel.instrumentation`, whose `__init__` re-exports the public names."""
