"""Training stages: fine-tune, extract, train, evaluate, predict."""
