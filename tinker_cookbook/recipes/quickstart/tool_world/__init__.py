"""The quick start's tool world: arithmetic Harbor tasks solved with one bash command, and the
multi-turn tool-use stage that distils a tool-using student on them.

- `tasks`: the Harbor task folders (expression in /app/problem.txt, graded by the task's test);
- `transcripts`: correct tool-using episodes as SFT transcripts;
- `sft`: SFT on those transcripts through the off-policy recipe;
- `task_reward`: held-out task reward of a model, through the library's rollouts;
- `stage`: the stage itself (`MultiTurnStage`, `run_multi_turn_stage`);
  `python -m tinker_cookbook.recipes.quickstart.tool_world` runs it.
"""
