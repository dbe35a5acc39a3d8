"""The code every function of the central API shares."""
