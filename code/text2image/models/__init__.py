"""The models of the book, one module per family (the NumPy neuron, autoencoders, CLIP, DALL-E, diffusion, GAN)."""
