"""attr2gender: predict CelebA's Male attribute from 39 predicted face attributes, or from pixels,
and measure what the detour costs."""

__version__ = "0.1.0"
