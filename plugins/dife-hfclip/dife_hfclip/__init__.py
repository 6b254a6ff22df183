"""Hugging Face transformers CLIP/SigLIP loader for DIFE"""

__version__ = "0.1.0"
