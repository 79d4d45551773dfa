"""Figure functions of the book, one module per chapter; every text inside a figure follows the edition's language."""
