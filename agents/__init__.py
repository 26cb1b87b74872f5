"""Faust agents and timers, one per module: each imports the app from `orders.app` and registers on it."""
