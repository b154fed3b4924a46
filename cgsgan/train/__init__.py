"""Training: the CGS-GAN objectives (:mod:`cgsgan.train.loss`)."""
