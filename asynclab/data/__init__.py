"""Bundled data for asynclab: ``corpus.json``, the course knowledge base (see ``asynclab.text``)."""
