"""Inference objects built from trained models: what turns a prompt into images (the latent-diffusion
``DiffusionPipeline``, DALL·E sampling with CLIP reranking). Empty until the generative chapters.

A pipeline may import the world, the tokenizer and the models, nothing above them.
"""
