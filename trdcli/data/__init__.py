"""Images in: folders and their checks, decoding, the items and loaders that crop them at each step's size."""
