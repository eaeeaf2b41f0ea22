"""Inference: loading a trained run (run), the inputs to answer (sources), batched generation (generate)."""
