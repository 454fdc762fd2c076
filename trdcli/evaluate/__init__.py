"""A trained model examined: the test-resolution sweep, shape and texture probes, cue-conflict shape bias."""
