"""The networks of the book and their losses, one module per family (``neuron``, ``autoencoders``
with its perceptual network, ``clip``; later ``dalle``, ``gan``, ``diffusion``).

No recipe, no cache, no chapter here: a model module may import the world and
the tokenizer (``text``), nothing above them.
"""
