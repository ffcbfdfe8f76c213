"""Measuring networks: parameters, multiply-adds (and, in later stages, mIoU and latency)."""
from .profile import Profile, count_macs, count_params, profile_architecture, profile_model

__all__ = ["Profile", "count_macs", "count_params", "profile_architecture", "profile_model"]
