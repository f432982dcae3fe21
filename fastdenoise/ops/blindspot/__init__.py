"""Blind-spot building blocks (AT-BSN / Laine19): shifted max-pool and the s-shift."""
