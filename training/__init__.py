"""Training avvos models: data mixing, STCN's loss and schedule, checkpoints and resume (see README.md)."""
