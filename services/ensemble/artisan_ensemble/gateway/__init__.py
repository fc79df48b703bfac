"""Router role: variant assignment, mode mix, canary weights, forwarding and per-variant statistics."""
