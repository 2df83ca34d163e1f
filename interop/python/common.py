"""Shared by the Python interop peers: payloads and the message sizes.

The command protocol spoken on the path /cmd is described in
crates/ferrows/examples/interop/common.rs; the Node and Rust peers
speak the same one.
"""

import random

# Every frame-length encoding edge (7-bit, 16-bit, 64-bit) and two large
# messages, the largest under ferrows' default 16 MiB limits with room for
# deflate's growth of random data (see interop/common.rs).
SIZES = [0, 1, 125, 126, 127, 65535, 65536, 1 << 20, (16 << 20) - (64 << 10)]

# The bound of every single wait.
WAIT = 60.0

# Characters of 1 to 4 bytes in UTF-8.
PALETTE = ["a", "b", " ", "z", "0", "é", "ß", "Ω", "€", "中", "😀", "𝄞"]


def binary_payload(size, seed):
    """`size` bytes of incompressible data."""
    return random.Random(seed).randbytes(size)


def text_payload(size, seed):
    """Exactly `size` bytes of UTF-8 with characters of every length: a
    random block of 8 KiB repeated, ASCII at the end."""
    rng = random.Random(seed)
    block, block_len = [], 0
    while block_len < min(size, 8192):
        c = rng.choice(PALETTE)
        n = len(c.encode())
        if block_len + n > size:
            break
        block.append(c)
        block_len += n
    block = "".join(block)
    repeats = size // block_len if block_len else 0
    text = block * repeats
    return text + "x" * (size - block_len * repeats)


def describe(message):
    kind = "text" if isinstance(message, str) else "binary"
    size = len(message.encode()) if isinstance(message, str) else len(message)
    return f"{kind} of {size} B"


def check_same(got, want, what):
    if type(got) is not type(want) or got != want:
        raise AssertionError(f"{what}: sent {describe(want)}, got {describe(got)}")
