"""The only package that imports torch/transformers: model loading, generation, the formula policy."""
