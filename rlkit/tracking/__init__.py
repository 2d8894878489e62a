"""What a run reports: metrics.jsonl, Weights & Biases, the progress bar, plots."""
