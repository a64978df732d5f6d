"""The newsletter's content: the issue model and the Markdown parser. Depends on nothing else here."""
