"""taskgram: exact pretraining-data statistics for language-model evaluation."""

__version__ = "0.1.0"
