"""`python -m tinker_cookbook.recipes.quickstart [key=value ...]`: the distillation study."""

import chz

from tinker_cookbook.recipes.quickstart.study import run_study

if __name__ == "__main__":
    chz.nested_entrypoint(run_study)
