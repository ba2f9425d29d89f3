"""Screen backtests: replay a screen or score over every stored session and measure what followed.

``returns`` turns price panels into forward returns per horizon; ``metrics`` turns a score or a
boolean screen plus those returns into IC, quantile spreads, turnover and hit rates; ``trades``
plays out trade plans (each plan's stop/target race, and an equal-risk portfolio). All three are
pure array code over ``(listings, sessions)`` panels.
"""
