"""Trajectory and preference-pair schemas, ETO pair rules and ETO JSON import/export."""
