"""The continuous-learning loop (SPEC F14): feedback validation, feedback dataset versions, warm-start
retraining settings, the A/B gate and promotion, and deletion that reaches derived data."""
