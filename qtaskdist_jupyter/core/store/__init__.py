"""TaskStore and its engine: every SQL statement, guarded transitions, result chunks."""
