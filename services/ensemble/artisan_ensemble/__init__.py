"""The Artisan inference image: LLM ensemble (brief → validation → hints → formula) and gateway roles."""
