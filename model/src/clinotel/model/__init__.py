"""clinotel's clinical model, shared by the collector, the dashboards and the alerts.

- `tables`: every table's name and the column names read or written by name;
- `clinical`: the typed columns of the clinical views (`clinical_stage_spans`, `clinical_workflows`);
- `indicators`: one definition per metric, rendered into panels, alert queries and docs;
- `collector_metrics`: the collector's own figures, by name and kind;
- `sql`: ClickHouse quoting;
- `store`: reaching the store from a command that reads it;
- `threads`: background threads that report their death.

Nothing here imports chDB, gRPC or grafanalib.
"""
