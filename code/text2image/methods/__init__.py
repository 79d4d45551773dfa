"""What the TokenCompose and pivotal-tuning chapters add on top of a pipeline (attention store and its
losses; textual inversion, LoRA, SLERP). Empty until those chapters.

A method may import the world, the tokenizer, the models and the pipelines, nothing above them.
"""
