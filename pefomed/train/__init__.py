"""Training: the DeepSpeed loop (loop), its config (deepspeed_config), the process group
(distributed), the learning-rate schedule (schedule) and checkpoints/adapters (checkpoints)."""
