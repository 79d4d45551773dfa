"""text2image: the code of the book "Du texte à l'image / From Text to Image".

Every model of the book is trained from scratch by this package on a procedural
world of coloured shapes; the chapters in ``book/`` call it and show results.
"""

import warnings

__version__ = "0.1.0"

# Inside a Jupyter kernel without ipywidgets, ``tqdm.auto`` (imported by
# transformers) warns that it falls back to text progress bars; the text bars
# are what the book wants, so the warning would only clutter chapter outputs.
warnings.filterwarnings("ignore", message="IProgress not found")
