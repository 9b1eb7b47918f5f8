"""`python -m` entry points: chz configs that build datasets, pick models and call a `main`."""
