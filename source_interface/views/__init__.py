"""The reporters' pages, one blueprint per module."""
