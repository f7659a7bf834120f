"""Destinations, activations, export runs and automations (see issue: Activation)."""
