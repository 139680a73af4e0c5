import numpy as np
import pytest

from rotorjax import packing


def test_known_layouts():
    # 2 bits, LSB first: 1 | 2<<2 | 3<<4 | 0<<6 = 57.
    np.testing.assert_array_equal(packing.pack(np.array([1, 2, 3, 0]), 2), [57])
    # 3 bits across a byte boundary: 0b101, 0b011, 0b110 → stream 101 110 011 (LSB first per index).
    got = np.asarray(packing.pack(np.array([5, 3, 6]), 3))
    stream = sum(((v >> j) & 1) << (3 * i + j) for i, v in enumerate([5, 3, 6]) for j in range(3))
    np.testing.assert_array_equal(got, [stream & 0xFF, stream >> 8])
    np.testing.assert_array_equal(packing.pack(np.array([1, 0, 0, 0, 0, 0, 0, 1, 1]), 1), [0b10000001, 1])


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("n", [1, 5, 64, 129])
def test_round_trip_and_size(bits, n):
    rng = np.random.default_rng(bits * 1000 + n)
    idx = rng.integers(0, 2**bits, size=(3, 2, n))
    packed = packing.pack(idx, bits)
    assert packed.shape == (3, 2, -(-n * bits // 8)) and packed.dtype == np.uint8
    np.testing.assert_array_equal(packing.unpack(packed, bits, n), idx)


def test_wrong_size_is_rejected():
    with pytest.raises(ValueError, match="bytes"):
        packing.unpack(np.zeros((2, 5), np.uint8), 4, 128)
