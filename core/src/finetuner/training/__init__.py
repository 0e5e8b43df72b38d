"""Fine-tuning: fit(), its options, batching, callbacks and checkpoints."""
