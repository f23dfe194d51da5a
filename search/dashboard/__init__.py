"""optuna-dashboard on a study, and the same plots as static files."""
