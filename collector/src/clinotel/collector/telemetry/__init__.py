"""The collector's own figures: one list of samples (`metrics`: `/metrics` text) and the thread that
writes them to `clinotel_collector_metrics` (`recorder`)."""
