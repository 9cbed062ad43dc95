"""Seeing results: terminal tables, Chrome traces, timelines and plots. Reads core data only."""
