"""Padmé padding lengths (Nikitin et al., PETS 2019), with a floor for short messages.

Padmé rounds a length up so that the padded length leaks O(log log n) bits about it, at a cost
of at most 12% overhead.  Short messages are padded to at least ``MIN_PADDED`` bytes so that a
two-word reply and a one-line report look alike.
"""

MIN_PADDED = 512


def padme(length: int) -> int:
    """Return the Padmé length for ``length`` (>= 1): the plain algorithm, no floor."""
    if length < 1:
        raise ValueError("padme is defined for lengths >= 1")
    exponent = length.bit_length() - 1
    mantissa_bits = exponent - exponent.bit_length()
    mask = (1 << mantissa_bits) - 1
    return (length + mask) & ~mask


def padded_length(data_length: int) -> int:
    """Length of the padded plaintext of an envelope holding ``data_length`` bytes.

    The padding always has at least one byte (the 0x80 marker, see docs/envelope.md).
    """
    if data_length < 0:
        raise ValueError("data_length must be >= 0")
    return padme(max(data_length + 1, MIN_PADDED))
