"""The console entry points: vltr-train, vltr-eval, vltr-data, vltr-report."""
