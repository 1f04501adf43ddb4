"""Serving: the exported forms (registry, builders, backends), the runtime that scores raw text, the HTTP server."""
