"""Data sets for training and measuring avvos."""
