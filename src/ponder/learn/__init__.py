"""Learners and the pure loss and advantage functions they compose; `rounds` runs one round of any."""
