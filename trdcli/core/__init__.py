"""The method itself, pure: which resolution each step uses, what it costs, how an image is reduced.

Imports only itself, torch and numpy: no fastai, no files, no command line.
"""
