"""Noise corruptions: gaussian_noise, shot_noise, impulse_noise, speckle_noise.

Each takes planes (float32 N×C×H×W in [0, 1], see _common), its severity's parameter from
PARAMS, a NumPy generator and the image scale (unused: noise is per pixel, with no length
to scale), and returns unclipped planes; `corrupt` clips. Every operation may overwrite
its input planes, which `corrupt` makes for it. Noise is drawn per pixel and per
channel, as in make_cifar_c.py, so it works on gray images directly.
"""

import numpy as np


def gaussian_noise(x, sigma, rng, scale):
    noise = rng.standard_normal(x.shape, dtype=np.float32)
    noise *= np.float32(sigma)
    noise += x
    return noise


def shot_noise(x, photons, rng, scale):
    return (rng.poisson(x * np.float32(photons)) / np.float32(photons)).astype(np.float32)


def impulse_noise(x, amount, rng, scale):
    # skimage.util.random_noise(mode='s&p', salt_vs_pepper=0.5): each value independently
    # becomes 1 with probability amount/2 and 0 with probability amount/2.
    u = rng.random(x.shape, dtype=np.float32)
    hit = u < np.float32(amount)
    x[hit] = u[hit] < np.float32(amount / 2)
    return x


def speckle_noise(x, sigma, rng, scale):
    noise = rng.standard_normal(x.shape, dtype=np.float32)
    noise *= np.float32(sigma)
    noise *= x
    noise += x
    return noise
