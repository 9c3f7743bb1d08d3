"""Cases: the case store, runtime, migration, progress, connectors, alert intake, reports."""
