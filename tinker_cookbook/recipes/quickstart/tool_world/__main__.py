"""`python -m tinker_cookbook.recipes.quickstart.tool_world [key=value ...]`: the multi-turn
tool-use stage on its own; prints its result as JSON."""

import json

import chz

from tinker_cookbook.recipes.quickstart.tool_world.stage import run_multi_turn_stage

if __name__ == "__main__":
    print(json.dumps(chz.nested_entrypoint(run_multi_turn_stage), indent=2))
