"""An emulation of 3D Slicer 5.8.1 and 5.12.3 for testing the scripted module (issue 23).

See README.md in this folder: what it is made of, where each vendored file comes from, and what
it cannot prove."""
