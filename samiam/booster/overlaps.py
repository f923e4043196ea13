"""Exact pairwise intersection counts of a mask stack, without a full-resolution GEMM.

The image is cut into 8 x 8 pixel blocks. Per mask and block we count the pixels inside,
``c`` in [0, 64]; the block is *full* for that mask when ``c == 64`` and *partial* when
``0 < c < 64``. For masks i, j the intersection inside one block is

* ``c_j`` when i is full there, ``c_i`` when j is full there (64 when both are),
* 0 when either is empty there,
* ``popcount(bits_i & bits_j)`` when both are partial, with ``bits`` the block's 64 pixels
  packed into one ``uint64``.

Summed over blocks, with ``F`` the ``(N, B)`` full indicator and ``P`` the ``(N, B)`` counts of
partial blocks (0 where full or empty)::

    I = 64 F F.T + P F.T + (P F.T).T + (popcounts over blocks where both masks are partial)

(check: both full 64; i full, j partial c_j from ``(P F.T).T``; i partial, j full c_i from
``P F.T``; both partial only the popcount term). Neighbouring blocks mostly have the same
column of ``F`` (the same set of masks covers them), so runs of consecutive blocks with equal
columns are merged first and the products run over R runs instead of B blocks, weighting each
run by its length: ``F F.T = (F_runs * lengths) @ F_runs.T`` and ``P F.T = P_runs @ F_runs.T``
with ``P_runs`` the partial counts summed per run. R is a few thousand for SAM-like masks at
1024 x 1024 (B = 16384), and never more than B. The products are float64 GEMMs on integers far
below 2**53, hence exact. The popcount term only touches blocks on mask boundaries that two or
more masks share: the packed blocks are grouped by block and every pair inside a group is
popcounted, all vectorised, in batches of bounded size.

Counting uses the bytes of the bool stack directly: a ``uint64`` view holds 8 pixels of one
block row as bytes 0/1, so the 8 rows of a block add up without carries (each byte <= 8) and
one multiply by ``0x0101010101010101`` sums the bytes. Masks are processed in chunks (copied
and zero-padded to a multiple of 8 only when the stack is not already so), so extra memory
stays small even at 4096 x 4096.
"""

from __future__ import annotations

import numpy as np

from samiam import masks as masklib

BLOCK = 8
"""Block side in pixels: 8 pixels of a row are the 8 bytes of one uint64 (not a tuning knob)."""
_FULL = BLOCK * BLOCK
_CHUNK_BYTES = 1 << 26
"""Bytes of the bool stack read per chunk of masks (bounds the temporary copies)."""
_GEMM_BYTES = 1 << 26
"""Bytes of one float64 (N, runs) slice in the full-block products (bounds their memory)."""
_PAIR_BATCH = 1 << 22
"""Mask pairs popcounted per batch in the boundary term (bounds its memory)."""

_U64 = np.uint64
_BYTE_SUM = _U64(0x0101010101010101)
"""Multiplier whose top byte becomes the sum of the 8 bytes (each byte <= 64 here)."""
_BYTE_BITS = _U64(0x0102040810204080)
"""Multiplier gathering the low bit of each of the 8 bytes into the top byte."""


def pairwise_intersections(masks: np.ndarray) -> np.ndarray:
    """Exact pixel count of every pairwise intersection.

    masks: (N, H, W) bool -> (N, N) int64 with ``[i, j] = |masks[i] & masks[j]|`` and the
    diagonal equal to the mask areas. Equal to
    ``(masks[:, None] & masks[None]).sum((2, 3))`` without materialising it.

    >>> m = np.zeros((2, 10, 10), bool); m[0, :6] = True; m[1, 4:] = True
    >>> pairwise_intersections(m).tolist()
    [[60, 20], [20, 60]]
    """
    masks = masklib.as_mask_stack(masks)
    n = len(masks)
    counts, (mask_ids, block_ids, bits) = _block_counts(masks)
    inter = _full_block_term(counts, mask_ids, block_ids)
    inter += _boundary_term(n, mask_ids, block_ids, bits)
    inter[np.diag_indices(n)] = counts.sum(axis=1, dtype=np.int64)
    return inter


def _block_counts(masks: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per-block pixel counts and the packed pixels of every partial block.

    Returns ``counts: (N, B) uint8`` (B blocks in row-major order) and the partial blocks as
    ``(mask_index (E,) int64, block_index (E,) int64, bits (E,) uint64)``, ordered by mask.
    """
    n, h, w = masks.shape
    hb, wb = -(-h // BLOCK), -(-w // BLOCK)
    counts = np.empty((n, hb * wb), np.uint8)
    mask_ids, block_ids, bits = [], [], []
    step = max(1, _CHUNK_BYTES // max(1, hb * wb * _FULL))
    for start in range(0, n, step):
        rows = _as_block_rows(masks[start:start + step], hb, wb)  # (c, hb, 8, wb) uint64
        chunk = ((rows.sum(axis=2, dtype=_U64) * _BYTE_SUM) >> _U64(56)).astype(np.uint8)
        counts[start:start + len(chunk)] = chunk.reshape(len(chunk), -1)
        m, by, bx = np.nonzero((chunk > 0) & (chunk < _FULL))
        mask_ids.append(m + start)
        block_ids.append(by * wb + bx)
        bits.append(_pack_blocks(rows[m, by, :, bx]))
    if not mask_ids:
        empty = np.empty(0, np.int64)
        return counts, (empty, empty, np.empty(0, _U64))
    return counts, (np.concatenate(mask_ids).astype(np.int64),
                    np.concatenate(block_ids).astype(np.int64), np.concatenate(bits))


def _as_block_rows(chunk: np.ndarray, hb: int, wb: int) -> np.ndarray:
    """(c, H, W) bool -> (c, hb, 8, wb) uint64 view: one block row of 8 pixels per uint64."""
    c, h, w = chunk.shape
    if (h, w) != (hb * BLOCK, wb * BLOCK) or not chunk.flags.c_contiguous:
        padded = np.zeros((c, hb * BLOCK, wb * BLOCK), bool)
        padded[:, :h, :w] = chunk
        chunk = padded
    return chunk.view(_U64).reshape(c, hb, BLOCK, wb)


def _pack_blocks(rows: np.ndarray) -> np.ndarray:
    """(E, 8) uint64 block rows of bytes 0/1 -> (E,) uint64 with one bit per pixel."""
    row_bits = ((rows * _BYTE_BITS) >> _U64(56)) << (np.arange(BLOCK, dtype=_U64) * _U64(8))
    return np.bitwise_or.reduce(row_bits, axis=1) if len(rows) else np.empty(0, _U64)


def _full_block_term(counts: np.ndarray, mask_ids: np.ndarray, block_ids: np.ndarray) -> np.ndarray:
    """``64 F F.T + P F.T + (P F.T).T`` as (N, N) int64, over runs of equal ``F`` columns.

    counts: (N, B) uint8 block counts; ``mask_ids, block_ids: (E,) int64`` the partial blocks.
    """
    n, n_blocks = counts.shape
    full = counts == _FULL
    starts = np.flatnonzero(np.r_[True, (full[:, 1:] != full[:, :-1]).any(axis=0)]) if n_blocks \
        else np.empty(0, np.int64)
    lengths = np.diff(np.r_[starts, n_blocks])
    heads = full[:, starts]                                          # (N, R) bool
    entry_runs = np.searchsorted(starts, block_ids, side="right") - 1
    order = np.argsort(entry_runs, kind="stable")
    entry_runs, entry_masks = entry_runs[order], mask_ids[order]
    entry_counts = counts[entry_masks, block_ids[order]]
    ff = np.zeros((n, n))
    pf = np.zeros((n, n))
    step = max(1, _GEMM_BYTES // (8 * max(n, 1)))
    for first in range(0, len(starts), step):
        runs = heads[:, first:first + step].astype(np.float64)     # (N, s)
        ff += (runs * lengths[first:first + step]) @ runs.T
        lo, hi = np.searchsorted(entry_runs, [first, first + step])
        partial = np.bincount(entry_masks[lo:hi] * runs.shape[1] + entry_runs[lo:hi] - first,
                              weights=entry_counts[lo:hi], minlength=runs.size).reshape(runs.shape)
        pf += partial @ runs.T
    return (_FULL * ff + pf + pf.T).astype(np.int64)


def _boundary_term(n: int, mask_ids: np.ndarray, block_ids: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """Symmetric (N, N) int64 sum of ``popcount(bits_i & bits_j)`` over blocks partial in both."""
    order = np.argsort(block_ids, kind="stable")  # stable: masks stay ascending within a block
    mask_ids, block_ids, bits = mask_ids[order], block_ids[order], bits[order]
    starts = np.flatnonzero(np.r_[True, block_ids[1:] != block_ids[:-1]]) if len(order) else order
    sizes = np.diff(np.r_[starts, len(order)])
    position = np.arange(len(order)) - np.repeat(starts, sizes)   # rank inside its block
    partners = np.repeat(sizes, sizes) - position - 1              # later entries in the block
    ends = np.cumsum(partners)
    flat = np.zeros(n * n, np.int64)
    first = 0
    while first < len(order):
        base = ends[first] - partners[first]  # pairs made by the entries before this batch
        # entries [first, last) whose pairs fit one batch (at least one entry per batch)
        last = max(first + 1, int(np.searchsorted(ends, base + _PAIR_BATCH, side="right")))
        left = np.repeat(np.arange(first, last), partners[first:last])
        run_offsets = np.repeat(ends[first:last] - partners[first:last] - base, partners[first:last])
        right = left + 1 + np.arange(len(left)) - run_offsets
        flat += np.bincount(mask_ids[left] * n + mask_ids[right],
                            weights=_popcount(bits[left] & bits[right]),
                            minlength=n * n).astype(np.int64)
        first = last
    pairs = flat.reshape(n, n)
    return pairs + pairs.T


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (SWAR; works on every numpy) -> (E,) uint64."""
    x = x - ((x >> _U64(1)) & _U64(0x5555555555555555))
    x = (x & _U64(0x3333333333333333)) + ((x >> _U64(2)) & _U64(0x3333333333333333))
    x = (x + (x >> _U64(4))) & _U64(0x0F0F0F0F0F0F0F0F)
    return (x * _BYTE_SUM) >> _U64(56)
