"""Models: loading any image-text-to-text checkpoint (hf), the built-in tiny default (tiny),
naming their components (components), and applying a PEFT method (peft_methods)."""
