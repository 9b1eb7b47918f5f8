"""Reinforcement-learning core: environments, rollouts, trajectories -> Datums, the RL loop."""
