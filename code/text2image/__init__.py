"""text2image: the code of the book "Du texte à l'image / From Text to Image".

Every model of the book is trained from scratch by this package on a procedural
world of coloured shapes; the chapters in ``book/`` call it and show results.

One folder per layer, imports running one way, from the bottom up (a test
walks them and fails on an arrow that runs back up, or on a cycle):

1. ``world/`` (scenes, rendering, captions, splits, oracle, tensors), ``text``
   (the tokenizer), ``profiles``, ``paths``, ``lang``;
2. ``models/``: networks and their losses, one file per family;
3. ``pipelines/``: inference objects built from models; ``methods/``: what
   TokenCompose and pivotal tuning add on top of a pipeline;
4. ``recipes/`` (the registry and one file per chapter: sizes, steps, tasks)
   and ``evaluate/`` (every measurement), with the machinery they share:
   ``train`` (the one loop), ``checkpoints``, ``pretrained`` (real hub weights);
5. ``charts/``, ``plots``, ``tables``, ``book/`` (the chapter runner), ``cli``.

"recipes" rather than "training": a recipe also says how its model is judged
and where its checkpoint lives; "evaluate" holds what every chapter measures,
so that two chapters never judge the same thing two ways.
"""

import warnings

__version__ = "0.1.0"

# Inside a Jupyter kernel without ipywidgets, ``tqdm.auto`` (imported by
# transformers) warns that it falls back to text progress bars; the text bars
# are what the book wants, so the warning would only clutter chapter outputs.
warnings.filterwarnings("ignore", message="IProgress not found")
