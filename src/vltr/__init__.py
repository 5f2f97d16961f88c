"""vltr: long-tailed video recognition on pre-extracted frame features."""

__version__ = "0.1.0"
