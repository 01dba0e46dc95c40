"""Tiny-model builder, SFT and masked DPO on TRL."""
