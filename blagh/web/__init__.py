"""The web pieces both apps share (Flask): security headers, language choice, report categories.

Part of the shared kernel: imported by source_interface and journalist_interface, importing
neither.  Only the roles that serve pages (the server and the workstation extras) have Flask.
"""
