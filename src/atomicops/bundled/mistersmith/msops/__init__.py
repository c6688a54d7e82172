"""Data work of the MisterSmith plan, run by its ``call:`` steps.

Each function takes the run's context first (connections, progress) and returns plain data
the step reads its outputs from. Nothing here knows whether it runs against AWS or the
sandbox: it gets its clients from the plan's connections.
"""
