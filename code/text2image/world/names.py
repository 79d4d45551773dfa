"""The world's shapes, colours and sizes as each edition names them, and the noun phrase of one object.

English keeps the words of the captions. French needs two things more: the
adjectives agree with the noun (``croix`` is feminine: *grande croix bleue*, and
so is the concept star: *grande étoile bleue*), and the size comes before the
noun while the colour comes after it, so the French phrase is not the English
one word for word. These are words for figure labels and tables; sentences
stay in the chapters.
"""

from __future__ import annotations

from text2image import lang as L
from text2image.world.scene import ALL_SHAPES, COLOUR_NAMES, SIZES

SHAPES_FR = {"circle": "cercle", "square": "carré", "triangle": "triangle", "diamond": "losange",
             "cross": "croix", "star": "étoile"}
FEMININE = frozenset({"cross", "star"})  # la croix, l'étoile; le cercle, le carré, le triangle, le losange
# (masculine, feminine): cyan and magenta are invariable, like rouge and jaune
COLOURS_FR = {"red": ("rouge", "rouge"), "yellow": ("jaune", "jaune"), "green": ("vert", "verte"),
              "cyan": ("cyan", "cyan"), "blue": ("bleu", "bleue"), "magenta": ("magenta", "magenta")}
SIZES_FR = {"small": ("petit", "petite"), "large": ("grand", "grande")}

# Every shape the world can draw, the concept star included, has a French name.
assert set(SHAPES_FR) == set(ALL_SHAPES) and FEMININE <= set(ALL_SHAPES)
assert set(COLOURS_FR) == set(COLOUR_NAMES) and set(SIZES_FR) == set(SIZES)


def _french(lang: str | None) -> bool:
    return (lang or L.current()) == "fr"


def shape(name: str, lang: str | None = None) -> str:
    """``cross`` as ``croix`` in French, ``cross`` in English."""
    return L.Text(SHAPES_FR[name] if _french(lang) else name)


def colour(name: str, shape: str | None = None, lang: str | None = None) -> str:
    """A colour adjective, agreeing in French with ``shape`` (masculine when no shape is given)."""
    if not _french(lang):
        return L.Text(name)
    return L.Text(COLOURS_FR[name][shape in FEMININE])


def size(name: str, shape: str | None = None, lang: str | None = None) -> str:
    """A size adjective, agreeing in French with ``shape`` (masculine when no shape is given)."""
    if not _french(lang):
        return L.Text(name)
    return L.Text(SIZES_FR[name][shape in FEMININE])


def phrase(shape_: str, colour_: str | None = None, size_: str | None = None, lang: str | None = None) -> str:
    """One object as a noun phrase: *grande croix bleue* in French, *large blue cross* in English."""
    if _french(lang):
        words = [size(size_, shape_, lang) if size_ else None, shape(shape_, lang),
                 colour(colour_, shape_, lang) if colour_ else None]
    else:
        words = [size_, colour_, shape_]
    return L.Text(" ".join(w for w in words if w))
