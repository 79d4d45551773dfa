"""text2image: the code of the book "Du texte à l'image / From Text to Image".

Every model of the book is trained from scratch by this package on a procedural
world of coloured shapes; the chapters in ``book/`` call it and show results.
"""

__version__ = "0.1.0"
