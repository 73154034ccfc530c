"""What a run writes: file names and atomic writes, checkpoints, the saved model, metrics, the report, tracking."""
