"""What the TokenCompose and pivotal-tuning chapters add on top of a pipeline (attention store and its
losses; textual inversion, LoRA, SLERP).

* :mod:`~text2image.methods.attention`: the cross-attention maps of a UNet's forward pass, on the graph;
* :mod:`~text2image.methods.tokencompose`: TokenCompose's token and pixel losses on them, with the world's
  word-to-mask links;
* :mod:`~text2image.methods.textual_inversion`: a new word (``<star>``) learned in the text encoder's input
  space alone, saved in diffusers' format and loaded with its ``load_textual_inversion``;
* :mod:`~text2image.methods.lora`: a low-rank update of the UNet's attention projections tuned around that word
  (peft through diffusers), saved as diffusers' ``pytorch_lora_weights.safetensors``, loaded with its
  ``load_lora_weights`` and removed bit for bit.

A method may import the world, the tokenizer, the models and the pipelines, nothing above them.
"""
