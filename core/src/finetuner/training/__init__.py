"""Fine-tuning: ``fit()`` (fit.py), its options (options.py), the loop (trainer.py), batching (batches.py),
the frozen-embedding cache (frozen_cache.py), optimizers (optim.py), callbacks and checkpoints."""
