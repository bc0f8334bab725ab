"""Strata: an NVM log file system (LibFS + digest) with an LD_PRELOAD shim."""
