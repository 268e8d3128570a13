"""NVIDIA GPU evidence verification."""
