"""What the TokenCompose and pivotal-tuning chapters add on top of a pipeline (attention store and its
losses; textual inversion, LoRA, SLERP).

* :mod:`~text2image.methods.attention`: the cross-attention maps of a UNet's forward pass, on the graph;
* :mod:`~text2image.methods.tokencompose`: TokenCompose's token and pixel losses on them, with the world's
  word-to-mask links.

A method may import the world, the tokenizer, the models and the pipelines, nothing above them.
"""
