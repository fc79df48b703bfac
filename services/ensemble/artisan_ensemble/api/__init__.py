"""HTTP surface of the ensemble role: request/response models and routes."""
