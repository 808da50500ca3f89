"""Maple: a real-time personalization decision engine."""
__version__ = "0.1.0"
