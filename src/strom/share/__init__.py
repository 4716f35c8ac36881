"""Pieces of Strom's queue features that every layer may use: they import nothing of Strom."""
