"""Attention networks: the base Transformer and ViT-B/16.

Attention is built as its memory sees it: Q, K and V projections, the per-head score matrix
``heads x S x S`` (one batched MatMul), softmax, the context MatMul and the output
projection. The reshapes and transposes that split and merge heads are views, not separate
operators.
"""

from __future__ import annotations

from cosma.graph import Graph
from cosma.graphs.builders import Net


def _attention(n: Net, q_in: str, kv_in: str, heads: int, *, mask: str | None = None) -> str:
    b, s, d = n.shape(q_in)
    t = n.shape(kv_in)[1]
    q = n.linear(q_in, d)
    k = n.linear(kv_in, d)
    v = n.linear(kv_in, d)
    scores = n.matmul(q, k, (b, heads, s, t))
    if mask:  # the causal mask, one constant shared by every decoder layer
        scores = n.op("Add", [scores, mask], (b, heads, s, t))
    p = n.softmax(scores)
    ctx = n.matmul(p, v, (b, s, d))
    return n.linear(ctx, d)


def _ffn(n: Net, x: str, hidden: int, act: str) -> str:
    d = n.shape(x)[-1]
    return n.linear(n.unary(act, n.linear(x, hidden)), d)


def transformer(
    *,
    seq_len: int = 128,
    batch: int = 1,
    d_model: int = 512,
    heads: int = 8,
    layers: int = 6,
    ff: int = 2048,
    element_bytes: float = 1,
) -> Graph:
    """The base Transformer of "Attention is all you need" (Vaswani et al. 2017) as
    ``torch.nn.Transformer`` defines it: 6 encoder and 6 decoder layers, d_model 512,
    8 heads, feed-forward 2048, post-norm, final LayerNorm on both stacks, causal mask in
    decoder self-attention. Source and target are embedded sequences of ``seq_len`` tokens
    (default 128) fed as graph inputs, as ``nn.Transformer`` takes them; no vocabulary
    projection.
    """
    n = Net("transformer", element_bytes=element_bytes)
    src = n.input((batch, seq_len, d_model), "src")
    tgt = n.input((batch, seq_len, d_model), "tgt")
    x = src
    for i in range(layers):
        with n.scope(f"encoder.{i}"):
            x = n.layer_norm(n.add(x, _attention(n, x, x, heads)))
            x = n.layer_norm(n.add(x, _ffn(n, x, ff, "Relu")))
    with n.scope("encoder.norm"):
        memory = n.layer_norm(x)
    y = tgt
    causal = n.parameter("causal_mask", seq_len * seq_len)
    for i in range(layers):
        with n.scope(f"decoder.{i}"):
            y = n.layer_norm(n.add(y, _attention(n, y, y, heads, mask=causal)))
            y = n.layer_norm(n.add(y, _attention(n, y, memory, heads)))
            y = n.layer_norm(n.add(y, _ffn(n, y, ff, "Relu")))
    with n.scope("decoder.norm"):
        out = n.layer_norm(y)
    return n.build([out])


def vit_b_16(
    *, resolution: int = 224, batch: int = 1, element_bytes: float = 1, classes: int = 1000
) -> Graph:
    """ViT-B/16 (Dosovitskiy et al. 2021), torchvision's ``vit_b_16``: 16x16 patches by a
    strided convolution, a class token and learned position embeddings, 12 pre-norm encoder
    blocks (768 wide, 12 heads, MLP 3072 with GELU), final LayerNorm, a linear head on the
    class token."""
    n = Net("vit_b_16", element_bytes=element_bytes)
    x = n.input((batch, 3, resolution, resolution))
    d, heads = 768, 12
    with n.scope("patchify"):
        p = n.conv(x, d, 16, stride=16)
        tokens = (resolution // 16) ** 2
        seq = n.op("Reshape", [p], (batch, tokens, d))  # flatten + transpose
        seq = n.op("Concat", [seq], (batch, tokens + 1, d), weights=d)  # class token
        seq = n.op("Add", [seq], (batch, tokens + 1, d), weights=(tokens + 1) * d)  # position
    for i in range(12):
        with n.scope(f"encoder.{i}"):
            seq = _vit_block(n, seq, heads)
    with n.scope("head"):
        seq = n.layer_norm(seq)
        cls = n.op("Gather", [seq], (batch, d))
        out = n.linear(cls, classes)
    return n.build([out])


def _vit_block(n: Net, x: str, heads: int) -> str:
    h = n.layer_norm(x)
    x = n.add(x, _attention(n, h, h, heads))
    h = n.layer_norm(x)
    return n.add(x, _ffn(n, h, 4 * n.shape(x)[-1], "Gelu"))
