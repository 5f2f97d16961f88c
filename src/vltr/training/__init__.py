"""Training and evaluation tasks: builders, config validation, stages, callbacks, loggers,
resume, progress, checkpoints."""
