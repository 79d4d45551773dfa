"""Figure functions of the book, one module per chapter; every text inside a figure follows the edition's language.

The top layer with ``plots``, ``tables``, ``book`` and the CLI: a chart may import anything below it
(world, models, pipelines, methods, recipes, evaluate) and returns figures, tables and numbers;
the sentences stay in the chapters.
"""
