"""The template language: source text → syntax tree (:mod:`.parser`, :mod:`.fastparse`,
:mod:`.syntax`) → compiled :class:`~.program.Program` (:mod:`.program`), with wildcard
files (:mod:`.wildcards`), settings (:mod:`.settings`) and the original tool's JSON
configs (:mod:`.legacy_config`)."""
