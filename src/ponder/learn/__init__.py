"""Learners and the pure loss and advantage functions they compose; `base` is the interface the loop drives a
round through, `rounds` the registry of learners by name."""
