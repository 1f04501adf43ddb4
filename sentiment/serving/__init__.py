"""Serving: exported forms, the runtime that scores raw text, the HTTP server."""
