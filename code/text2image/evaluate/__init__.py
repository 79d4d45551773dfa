"""Evaluation, one module per kind of measurement, shared by every chapter.

``verdicts``: the oracle's GenEval-style verdicts on one image against one
prompt, and their summary; ``reconstruction``: what the autoencoders keep of a
scene; ``clip``: zero-shot, ranking, retrieval, probes and geometry of a CLIP;
``concept``: how a learned concept is drawn and still obeys (pivotal tuning).
These modules may import the world, the models, the pipelines and methods,
and the recipes' registry (to cache a measurement next to its checkpoint).
"""
