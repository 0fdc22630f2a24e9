"""Neural networks of the studio: the StyleGAN3 generator (and, in engine.encoders, the encoders)."""
