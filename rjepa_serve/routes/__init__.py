"""HTTP routes, one module per concern: health (health, metrics, reload), scoring, generation, feedback, page."""
