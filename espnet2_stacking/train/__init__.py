"""Training loop glue."""
