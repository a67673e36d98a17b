"""Bundled training data (a package so setuptools ships the CSV as package data)."""
