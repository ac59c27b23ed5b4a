"""A static key/value cache and a fixed-shape decode step for `MusicGenDecoder` (generation's fast path).

transformers' MusicGen keeps a `DynamicCache` that grows by one step per call, so every step has new
shapes and CUDA graphs cannot capture it; a 48-layer decoder then spends its time launching kernels.
`StaticMusicGenDecoder` preallocates each layer's self-attention keys/values for the whole window,
computes the cross-attention keys/values of the condition once per window, and runs a step whose
shapes never change: it attends over the whole buffer with the positions not yet written masked out
(as gpt-fast does). The step can be replayed as one CUDA graph (`graphed_step`) or compiled
(`compiled_step`). It computes with the decoder's own weights, or with a copy in the autocast dtype
refreshed at every window; `MusicGenDecoder`'s forward with transformers' dynamic cache stays the
reference (tests: the same logits and tokens).
"""
from __future__ import annotations

import copy
from typing import Callable, Optional

import torch
from torch import nn
from torch.nn import functional as F

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class StaticMusicGenDecoder(nn.Module):
    """Decode steps of `decoder` for a fixed batch, window and condition length.

    `reset(cond [N, S, cond_dim])` starts a window (S <= `max_cond`); `forward(input_ids [N, K, L],
    positions [L])` feeds the delayed tokens at decoder positions `positions` (consecutive, from 0
    after a reset) and returns logits `[N, K, L, V]`, writing their keys/values into the cache. A
    step (L = 1) has the same shapes at every position: the call CUDA graphs and `torch.compile` take.

    Args:
        decoder: a `MusicGenDecoder`.
        batch: N, rows per call (2 B with classifier-free guidance).
        max_length: decoder positions a window may use (its tokens + K - 1 delay steps + BOS).
        max_cond: condition steps a window may have (the encoder's features for a full window).
        dtype: the dtype to compute in (autocast's, when generation runs under it); a decoder in
            another dtype is computed with a copy cast to it, refreshed from the decoder at each `reset`.
    """

    def __init__(self, decoder: nn.Module, batch: int, max_length: int, max_cond: int, dtype: Optional[torch.dtype] = None):
        super().__init__()
        param = next(decoder.parameters())
        dtype = dtype or param.dtype
        self.source = [decoder]  # in a list: not a submodule of the cache
        self.net = decoder if dtype == param.dtype else self._cast_copy(decoder, dtype)
        self.stack = self.net.lm.model.decoder  # transformers' MusicgenDecoder: embeddings, layers, final norm
        first = self.stack.layers[0].self_attn
        self.num_heads, self.head_dim = first.num_heads, first.head_dim
        if self.stack.embed_positions.weights.shape[0] < max_length:
            self.stack.embed_positions.make_weights(max_length, decoder.width)
        kv_shape = (len(self.stack.layers), batch, self.num_heads, max_length, self.head_dim)
        cross_shape = (len(self.stack.layers), batch, self.num_heads, max_cond, self.head_dim)
        options = dict(device=param.device, dtype=dtype)
        self.register_buffer("keys", torch.zeros(kv_shape, **options), persistent=False)
        self.register_buffer("values", torch.zeros(kv_shape, **options), persistent=False)
        self.register_buffer("cross_keys", torch.zeros(cross_shape, **options), persistent=False)
        self.register_buffer("cross_values", torch.zeros(cross_shape, **options), persistent=False)
        self.register_buffer("cross_valid", torch.zeros(batch, 1, 1, max_cond, dtype=torch.bool, device=param.device),
                             persistent=False)
        self.register_buffer("key_positions", torch.arange(max_length, device=param.device), persistent=False)
        aligned_steps = max_cond * decoder.aligned_upsample if decoder.aligned_proj is not None else 0
        self.register_buffer("aligned", torch.zeros(batch, aligned_steps, decoder.width, **options), persistent=False)
        self.register_buffer("aligned_last", torch.zeros((), dtype=torch.long, device=param.device), persistent=False)
        self._compiled: Optional[Step] = None
        self._graphed: Optional[Step] = None

    @staticmethod
    def _cast_copy(decoder: nn.Module, dtype: torch.dtype) -> nn.Module:
        kept, decoder._static_decoders = decoder._static_decoders, {}
        try:
            return copy.deepcopy(decoder).to(dtype).eval()
        finally:
            decoder._static_decoders = kept

    @torch.no_grad()
    def reset(self, cond: torch.Tensor) -> None:
        """Start a window conditioned on `cond [N, S, cond_dim]`: the weights copy refreshed, the
        cross-attention keys/values and the aligned features computed once; the self-attention cache is
        overwritten as positions are fed (the mask hides what a previous window left)."""
        source = self.source[0]
        if self.net is not source:
            for mine, theirs in zip(self.net.parameters(), source.parameters()):
                mine.copy_(theirs)
        with torch.autocast(cond.device.type, enabled=False):
            cond = cond.to(self.keys.dtype)
            steps = cond.shape[1]
            memory = self.net.project_condition(cond)
            for index, layer in enumerate(self.stack.layers):
                attention = layer.encoder_attn
                self.cross_keys[index, :, :, :steps] = self._heads(attention.k_proj(memory))
                self.cross_values[index, :, :, :steps] = self._heads(attention.v_proj(memory))
            self.cross_valid.fill_(False)
            self.cross_valid[..., :steps] = True
            if self.net.aligned_proj is not None:
                aligned = self.net.aligned_features(cond)
                self.aligned[:, : aligned.shape[1]] = aligned
                self.aligned_last.fill_(aligned.shape[1] - 1)

    def compiled_step(self) -> Step:
        """`forward` compiled once for one-position steps (`torch.compile`, whole graph, static shapes;
        on CUDA `reduce-overhead`, which also replays each step as a CUDA graph)."""
        if self._compiled is None:
            mode = "reduce-overhead" if self.keys.is_cuda else None
            self._compiled = torch.compile(self.forward, mode=mode, fullgraph=True, dynamic=False)
        return self._compiled

    @torch.no_grad()
    def graphed_step(self) -> Step:
        """`forward` for one-position steps replayed as one captured CUDA graph (no compilation: the
        capture takes one step's time). Inputs are copied into the graph's own; the logits returned
        are the graph's output buffer, overwritten by the next step."""
        if self._graphed is None:
            if not self.keys.is_cuda:
                raise RuntimeError("a CUDA graph needs the decoder on a CUDA device")
            last = self.key_positions.shape[0] - 1  # capture writes the last position: always rewritten before read
            ids = torch.zeros(self.keys.shape[1], self.net.lm.config.num_codebooks, 1, dtype=torch.long, device=self.keys.device)
            positions = self.key_positions[last:].clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):  # warm-up: lazy initialisation and workspaces before capture
                    self(ids, positions)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                logits = self(ids, positions)

            def step(input_ids: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
                ids.copy_(input_ids)
                positions.copy_(at)
                graph.replay()
                return logits

            self._graphed = step
        return self._graphed

    def _heads(self, states: torch.Tensor) -> torch.Tensor:
        """`[N, L, H * Dh]` -> `[N, H, L, Dh]`."""
        return states.view(*states.shape[:2], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        with torch.autocast(input_ids.device.type, enabled=False):
            return self._forward(input_ids, positions)

    def _forward(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        stack = self.stack
        hidden = sum(stack.embed_tokens[k](input_ids[:, k]) for k in range(input_ids.shape[1]))  # [N, L, D]
        hidden = hidden + stack.embed_positions.weights.index_select(0, positions).to(hidden.dtype)
        if self.net.aligned_proj is not None:
            hidden = hidden + self.net.aligned_condition(self.aligned, positions, self.aligned_last)
        causal = (self.key_positions[None, :] <= positions[:, None])[None, None]  # [1, 1, L, max_length]
        for index, layer in enumerate(stack.layers):
            attention = layer.self_attn
            normed = layer.self_attn_layer_norm(hidden)
            self.keys[index].index_copy_(2, positions, self._heads(attention.k_proj(normed)))
            self.values[index].index_copy_(2, positions, self._heads(attention.v_proj(normed)))
            hidden = hidden + self._attend(attention, normed, self.keys[index], self.values[index], causal)
            cross = layer.encoder_attn
            normed = layer.encoder_attn_layer_norm(hidden)
            hidden = hidden + self._attend(cross, normed, self.cross_keys[index], self.cross_values[index], self.cross_valid)
            normed = layer.final_layer_norm(hidden)
            hidden = hidden + layer.fc2(layer.activation_fn(layer.fc1(normed)))
        hidden = stack.layer_norm(hidden)
        return torch.stack([head(hidden) for head in self.net.lm.lm_heads], dim=1)

    def _attend(self, attention: nn.Module, hidden: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """One attention block's output `[N, L, D]` for queries from `hidden` over cached `keys`/`values`."""
        query = self._heads(attention.q_proj(hidden))
        out = F.scaled_dot_product_attention(query, keys, values, attn_mask=mask, scale=attention.scaling)
        return attention.out_proj(out.transpose(1, 2).reshape(hidden.shape))
