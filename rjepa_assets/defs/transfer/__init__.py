"""Cross-LLM latent adapters (SPEC F13): the `calibration_adapter` asset."""
