"""The CIFAR-10-C parameter tables, as data.

Source: Hendrycks & Dietterich 2019, repository hendrycks/robustness, file
`ImageNet-C/create_c/make_cifar_c.py` (read at commit ca360085d57889288c4143fddd8a707bbcae01bd).
Each entry below is that file's list `c = [...]` for the corruption, severities 1..5, copied
value for value; the comment says what each number is and its unit. These are the CIFAR
values, milder than ImageNet-C's (`make_imagenet_c.py`, which the `imagecorruptions` package
uses): e.g. Gaussian noise σ .04–.10 here against .08–.38 there.

Lengths are in pixels of the 32×32 CIFAR image (`CIFAR_SIDE`); `corrupt` scales them by
side/32 for other sizes. Intensities are on the [0, 1] pixel scale the file works in.
"""

CIFAR_SIDE = 32  # px: the image side the file was written for (its IMSIZE, its 32s)

BENCHMARK_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog",
    "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")

_IMSIZE = CIFAR_SIDE  # elastic_transform's table is written as multiples of IMSIZE = 32

PARAMS = {
    # σ of additive N(0, σ²) noise, per channel.
    "gaussian_noise": (0.04, 0.06, .08, .09, .10),
    # photons at full intensity: Poisson(x·c)/c.
    "shot_noise": (500, 250, 100, 75, 50),
    # fraction of channel values set to 0 or 1 (skimage 's&p', half each).
    "impulse_noise": (.01, .02, .03, .05, .07),
    # (disk radius px, σ px of the 3×3 Gaussian that antialiases the disk).
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
    # (Gaussian σ px, largest pixel displacement px, iterations).
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    # ImageMagick motion blur (radius px, σ px); angle uniform in [-45°, 45°].
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
    # np.arange(start, stop, step) of zoom factors; floating point makes the first two
    # include their stop (1.06, 1.11) and the last three not: 7, 12, 16, 21, 26 factors.
    "zoom_blur": ((1, 1.06, 0.01), (1, 1.11, 0.01), (1, 1.16, 0.01),
                  (1, 1.21, 0.01), (1, 1.26, 0.01)),
    # (flake-noise mean, flake-noise σ, zoom factor, threshold, motion-blur radius px,
    #  motion-blur σ px, weight kept of the image against its whitened copy); angle in
    #  [-135°, -45°].
    "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.95),
             (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
             (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
             (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
             (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
    # (weight of the image, weight of the frost texture): c0·x + c1·frost.
    "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
    # (fog strength, plasma-fractal wibble decay per octave).
    "fog": ((.2, 3), (.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
    # added to HSV value.
    "brightness": (.05, .1, .15, .2, .3),
    # factor on each channel's deviation from its mean.
    "contrast": (.75, .5, .4, .3, 0.15),
    # (displacement scale px, displacement smoothing σ px, affine corner jitter px).
    "elastic_transform": ((_IMSIZE * 0, _IMSIZE * 0, _IMSIZE * 0.08),
                          (_IMSIZE * 0.05, _IMSIZE * 0.2, _IMSIZE * 0.07),
                          (_IMSIZE * 0.08, _IMSIZE * 0.06, _IMSIZE * 0.06),
                          (_IMSIZE * 0.1, _IMSIZE * 0.04, _IMSIZE * 0.05),
                          (_IMSIZE * 0.1, _IMSIZE * 0.03, _IMSIZE * 0.03)),
    # fraction of the side kept by the box down-sampling.
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    # PIL JPEG quality.
    "jpeg_compression": (80, 65, 58, 50, 40),
    # σ of multiplicative noise: x + x·N(0, σ²).
    "speckle_noise": (.06, .1, .12, .16, .2),
    # Gaussian σ px.
    "gaussian_blur": (.4, .6, 0.7, .8, 1),
    # (liquid-noise mean, liquid-noise σ, smoothing σ px, threshold, c4, mud?): c4 is the
    # water's colour strength when mud = 0 (severities 1-3) and the mud mask's smoothing σ px
    # when mud = 1 (severities 4-5).
    "spatter": ((0.62, 0.1, 0.7, 0.7, 0.5, 0),
                (0.65, 0.1, 0.8, 0.7, 0.5, 0),
                (0.65, 0.3, 1, 0.69, 0.5, 0),
                (0.65, 0.1, 0.7, 0.69, 0.6, 1),
                (0.65, 0.1, 0.5, 0.68, 0.6, 1)),
    # (factor, offset) on HSV saturation: clip(s·factor + offset, 0, 1).
    "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
}

CORRUPTIONS = BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS
