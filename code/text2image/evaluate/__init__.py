"""Evaluation, one module per kind of measurement, shared by every chapter.

``verdicts``: the oracle's GenEval-style verdicts on one image against one
prompt; ``benchmark``: the fixed, versioned prompt set every text-to-image
model is judged on, with its ``references`` rows (world, retrieval, random),
its ``frechet`` distance and ``intervals`` (Wilson 95 %); ``readings``: the same
images read by colour alone; ``monitor``: the ``val`` watch of a training;
``reconstruction``: what the autoencoders keep of a scene; ``clip``: zero-shot,
ranking, retrieval, probes and geometry of a CLIP; ``grounding``: where each
word's attention falls (TokenCompose); ``concept``: how a learned concept is
drawn and still obeys (pivotal tuning).
These modules may import the world, the models, the pipelines and methods,
and the recipes (to cache a measurement next to its checkpoint), nothing above.
"""
