"""Pure ensemble logic: prompts, keywords, brief parsing, breakers, downshift, cache, formula, validation.

Nothing here imports torch, transformers or an HTTP library (import-linter contract).
"""
