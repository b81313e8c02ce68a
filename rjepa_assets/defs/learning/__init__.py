"""The continuous-learning loop: interactions, A/B gate, promotion and rollback, feedback and deletion sensors."""
