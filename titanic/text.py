"""The characters that no name the service stores and no line it logs may carry as they are."""

# Control characters (C0, DEL, C1: NUL, tab, CR, LF, escape, NEL, ...), the Unicode line and
# paragraph separators, and the bidirectional formatting characters (marks, embeddings, overrides,
# isolates), which can end a line or make text read differently from what it holds. A pattern
# that Python's re, SQLite (through it) and PostgreSQL's regular expressions read alike.
UNPRINTABLE = r"[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]"
