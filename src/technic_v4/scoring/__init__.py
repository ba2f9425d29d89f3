"""Scoring: market regime, sub-scores, TechRating, RSRating, Signal and Rationale."""
