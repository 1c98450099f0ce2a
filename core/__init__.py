"""The bottom layer: the system's words, confined paths and the one git entry point.

It imports nothing of codexflow's but ``config``, so every other layer may use it.
"""
