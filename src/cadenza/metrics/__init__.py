"""Objective metrics as pure functions: arrays in, floats out, NaN when undefined."""
