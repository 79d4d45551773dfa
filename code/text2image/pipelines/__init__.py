"""Inference objects built from trained models: what turns a prompt into images. ``prompts`` checks and
encodes the prompts for all of them; ``dalle`` samples codes and reranks them with CLIP (``real_dalle_mini``
loads the public weights); ``gan`` draws in one pass; ``diffusion`` runs the DDPM, DDIM and Euler samplers
with classifier-free guidance.

A pipeline may import the world, the tokenizer and the models, nothing above them.
"""
