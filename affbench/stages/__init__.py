"""The stages of a run and what drives them: fine-tune (1), extract (2), train (3), evaluate, predict."""
