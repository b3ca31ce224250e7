"""Errors of the training pipeline (kept free of torch so the CLI can import them cheaply)."""


class TrainingError(RuntimeError):
    """A run cannot start or resume as asked; the message says what to do."""
