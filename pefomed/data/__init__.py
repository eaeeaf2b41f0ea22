"""Data: raw dataset readers (formats/), the image loader, prepare, prompt templates, collation."""
