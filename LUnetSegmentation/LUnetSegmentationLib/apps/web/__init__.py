"""Optional web app (trame-slicer): the one-click panel in a browser. Not part of the Slicer extension.

Import `LUnetSegmentationLib.apps.web.app` only in the web environment (.venv-web); `session` is the
browser-free part and needs only what the core needs.
"""
