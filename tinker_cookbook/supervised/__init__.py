"""Supervised fine-tuning: chat datasets and the SFT loop."""
