"""Strom."""
