"""The shapes world: procedural scenes, the demo model's tokenizer and its training."""
