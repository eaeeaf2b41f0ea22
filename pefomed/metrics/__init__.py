"""Metric kernels every stage may use: pure functions of predictions and references (VQA
matching conventions, the PTB tokenizer, BLEU/ROUGE-L/CIDEr-D statistics). Training's periodic
evaluation and `pefomed score` compute the same numbers from the same code; METRICS.json entries,
intervals and paired tests are pefomed.score's."""
