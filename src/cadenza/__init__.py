"""Cadenza: a reproducible DVC + Prefect pipeline for symbolic-music generation research."""
