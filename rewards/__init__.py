"""Built-in reward functions. Each is a plain function with the keyword contract in docs/rewards.md."""
