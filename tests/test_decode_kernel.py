"""The GGUF-block decode kernel rebuilds the exact fp32 weights and matches a fp32 matmul."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from treadle.kernels import ggml


@pytest.mark.parametrize("qtype", ["Q4_1", "Q8_0"])
@pytest.mark.parametrize("rows", [1, 3, 8])
def test_block_matmul_equals_fp32_matmul_of_dequantised_weights(lib, qtype: str, rows: int) -> None:  # noqa: ANN001
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize, quantize

    n, k = 96, 160
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.05, size=(n, k)).astype(np.float32)
    qt = GGMLQuantizationType[qtype]
    blocks = quantize(w, qt)
    assert blocks.shape == (n, k // 32 * ggml.BLOCK_BYTES[qtype])
    w_deq = torch.from_numpy(dequantize(blocks, qt).reshape(n, k).astype(np.float32))
    bw = ggml.BlockWeight(torch.from_numpy(blocks), qtype, n, k)
    x = torch.randn(rows, k)
    y = bw.matmul(x, lib)
    torch.testing.assert_close(y, x @ w_deq.T, rtol=1e-5, atol=1e-5)
    # Unit vectors read the rebuilt weights back exactly (one product, no rounding from sums).
    eye = torch.eye(k)[:8]
    assert torch.equal(bw.matmul(eye, lib), w_deq[:, :8].T.contiguous())


def test_block_weight_rejects_wrong_shapes() -> None:
    with pytest.raises(ValueError, match="Q4_1"):
        ggml.BlockWeight(torch.zeros(4, 19, dtype=torch.uint8), "Q4_1", 4, 32)
    with pytest.raises(ValueError, match="qtype"):
        ggml.BlockWeight(torch.zeros(4, 20, dtype=torch.uint8), "Q5_K", 4, 32)


@pytest.mark.parametrize("qtype", ["Q4_1", "Q8_0"])
def test_tiled_kernel_matches_reference_bit_for_bit_and_is_batch_invariant(lib, qtype: str) -> None:  # noqa: ANN001
    """Any row count (tile edges: N % 4, M % 3, M beyond one 64-row block) gives the reference's bits."""
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    n, k = 103, 96  # 103 = 25 full 4-row weight tiles + an edge of 3
    rng = np.random.default_rng(1)
    blocks = quantize(rng.normal(0, 0.05, size=(n, k)).astype(np.float32), GGMLQuantizationType[qtype])
    bw = ggml.BlockWeight(torch.from_numpy(blocks), qtype, n, k)
    x = torch.randn(70, k)
    y = bw.matmul(x, lib)
    for rows in (1, 4, 8):
        assert torch.equal(y[:rows], bw.matmul_reference(x[:rows], lib))
    # A row's result does not depend on the other rows of the step.
    assert torch.equal(y[69:70], bw.matmul_tiled(x[69:70], lib))
    assert torch.equal(y[5:8], bw.matmul(x[5:8], lib))
    assert torch.equal(y[5:7], bw.matmul(x[5:7], lib))
    with pytest.raises(ValueError, match="at most"):
        bw.matmul_reference(x, lib)


@pytest.mark.parametrize("qtype", ["Q4_1", "Q8_0"])
def test_one_row_kernel_is_as_accurate_as_the_tiled_one_and_reads_weights_exactly(lib, qtype: str) -> None:  # noqa: ANN001
    """One-row steps use q*_gemv1 (scale factored out of each block): within a few fp32 roundings of the
    exact product relative to the largest output, also when x has a nonzero mean (the Q4_1 minimum term
    must not cancel against the dot product), deterministic, every N % 4 edge; unit vectors give the
    rebuilt weights (bit for bit for Q8_0, whose weights are one product)."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize, quantize

    assert lib.gemv1_max_k() == ggml.GEMV1_MAX_K
    rng = np.random.default_rng(2)
    for n, k in ((103, 96), (64, 576), (6, 1536)):
        qt = GGMLQuantizationType[qtype]
        blocks = quantize(rng.normal(0, 0.05, size=(n, k)).astype(np.float32), qt)
        w64 = torch.from_numpy(dequantize(blocks, qt).reshape(n, k).astype(np.float64))
        bw = ggml.BlockWeight(torch.from_numpy(blocks), qtype, n, k)
        for _ in range(5):
            x = torch.randn(1, k) * 3 + 0.5  # a nonzero mean: the Q4_1 minimum term matters
            exact = x.double() @ w64.T
            y1, yt = bw.matmul(x, lib), bw.matmul_tiled(x, lib)
            scale = exact.abs().max()
            err1 = ((y1.double() - exact).abs().max() / scale).item()
            errt = ((yt.double() - exact).abs().max() / scale).item()
            assert err1 < 1e-6 and errt < 1e-6, (n, k, err1, errt)
            assert torch.equal(y1, bw.matmul(x, lib))
        w32 = w64.float()
        for j in (0, 31, k - 1):
            col = bw.matmul(torch.eye(k)[j:j + 1], lib)[0]
            if qtype == "Q8_0":
                assert torch.equal(col, w32[:, j])
            else:
                torch.testing.assert_close(col, w32[:, j], rtol=1e-6, atol=1e-7)
