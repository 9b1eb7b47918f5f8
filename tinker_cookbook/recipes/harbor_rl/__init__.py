"""Harbor-format sandbox tasks as RL environments (`harbor_env`, `harbor_tools`, `train`)."""
