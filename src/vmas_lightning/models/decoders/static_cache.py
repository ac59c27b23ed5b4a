"""A static key/value cache and a fixed-shape decode step for `MusicGenDecoder` (generation's fast path).

transformers' MusicGen keeps a `DynamicCache` that grows by one step per call, so every step has new
shapes and CUDA graphs cannot capture it; a 48-layer decoder then spends its time launching kernels.
`StaticMusicGenDecoder` preallocates each layer's self-attention keys/values for the whole window,
computes the cross-attention keys/values of the condition once per window, and runs a step whose
shapes never change: it attends over the whole buffer with the positions not yet written masked out
(as gpt-fast does). The step can be replayed as one CUDA graph (`graphed_step`) or compiled
(`compiled_step`). Under autocast it computes as autocast does (the linear layers in autocast's dtype,
norms, embeddings and the residual stream in float32) with a copy of the linear weights cast once per
window, so a step replays without re-casting them; `MusicGenDecoder`'s forward with transformers'
dynamic cache stays the reference (tests: the same logits and tokens).
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

    `reset(cond [N, S, cond_dim], text=None)` starts a window (S plus the text's length <= `max_cond`); `forward(input_ids [N, K, L],
    positions [L])` feeds the delayed tokens at decoder positions `positions` (consecutive, from 0
    after a reset) and returns logits `[N, K, L, V]`, writing their keys/values into the cache. A
    step (L = 1) has the same shapes at every position: the call CUDA graphs and `torch.compile` take.

    Args:
        decoder: a `MusicGenDecoder`.
        batch: N, rows per call (2 B with classifier-free guidance).
        max_length: decoder positions a window may use (its tokens + K - 1 delay steps + BOS).
        max_cond: cross-attention memory a window may have (the encoder's features for a full window,
            plus the text memory's length for a model with text).
        linear_dtype: the dtype of the linear layers' arithmetic (autocast's, when generation runs
            under it); when it differs from the weights', they are computed with a copy of the
            decoder whose linear weights are cast to it, refreshed from the decoder at each `reset`.
    """

    def __init__(self, decoder: nn.Module, batch: int, max_length: int, max_cond: int,
                 linear_dtype: Optional[torch.dtype] = None):
        super().__init__()
        param = next(decoder.parameters())
        self.linear_dtype = linear_dtype or param.dtype
        self.source = [decoder]  # in a list: not a submodule of the cache
        with torch.inference_mode(False):  # made under `vmas test`'s inference mode, updated outside it too
            self.net = decoder if self.linear_dtype == param.dtype else self._cast_copy(decoder, self.linear_dtype)
            self.stack = self.net.lm.model.decoder  # transformers' MusicgenDecoder: embeddings, layers, final norm
            first = self.stack.layers[0].self_attn
            self.num_heads, self.head_dim = first.num_heads, first.head_dim
            if self.stack.embed_positions.weights.shape[0] < max_length:
                self.stack.embed_positions.make_weights(max_length, decoder.width)
            options = dict(device=param.device, dtype=self.linear_dtype)  # keys/values come out of linear layers
            for index in range(len(self.stack.layers)):  # one buffer per layer: updated in place, also when compiled
                self.register_buffer(f"keys{index}", torch.zeros(batch, self.num_heads, max_length, self.head_dim, **options),
                                     persistent=False)
                self.register_buffer(f"values{index}", torch.zeros_like(getattr(self, f"keys{index}")), persistent=False)
                self.register_buffer(f"cross_keys{index}", torch.zeros(batch, self.num_heads, max_cond, self.head_dim, **options),
                                     persistent=False)
                self.register_buffer(f"cross_values{index}", torch.zeros_like(getattr(self, f"cross_keys{index}")),
                                     persistent=False)
            self.register_buffer("cross_valid", torch.zeros(batch, 1, 1, max_cond, dtype=torch.bool, device=param.device),
                                 persistent=False)
            self.register_buffer("key_positions", torch.arange(max_length, device=param.device), persistent=False)
            aligned_steps = max_cond * decoder.aligned_upsample if decoder.aligned_proj is not None else 0
            self.register_buffer("aligned", torch.zeros(batch, aligned_steps, decoder.width, device=param.device,
                                                        dtype=self.linear_dtype), persistent=False)
            self.register_buffer("aligned_last", torch.zeros((), dtype=torch.long, device=param.device), persistent=False)
            # the step's inputs, copied in: the same tensors (shapes, strides, addresses) at every step
            self.register_buffer("step_ids", torch.zeros(batch, decoder.lm.config.num_codebooks, 1, dtype=torch.long,
                                                         device=param.device), persistent=False)
            self.register_buffer("step_position", self.key_positions[-1:].clone(), persistent=False)
        self._compiled: Optional[Step] = None
        self._graphed: Optional[Step] = None

    @staticmethod
    def _cast_copy(decoder: nn.Module, dtype: torch.dtype) -> nn.Module:
        """`decoder` copied with its linear layers' weights in `dtype` (the rest as it is)."""
        kept, decoder._static_decoders = decoder._static_decoders, {}
        try:
            net = copy.deepcopy(decoder).eval()
        finally:
            decoder._static_decoders = kept
        for module in net.modules():
            if isinstance(module, nn.Linear):
                module.to(dtype)
        return net

    @torch.no_grad()
    def reset(self, cond: torch.Tensor, text: Optional[torch.Tensor] = None) -> None:
        """Start a window conditioned on `cond [N, S, cond_dim]` (and `text [N, L, width]`, the caption's
        memory, when the model has text): the weights copy refreshed, the
        cross-attention keys/values and the aligned features computed once; the self-attention cache is
        overwritten as positions are fed (the mask hides what a previous window left)."""
        source = self.source[0]
        if self.net is not source:
            for mine, theirs in zip(self.net.parameters(), source.parameters()):
                mine.copy_(theirs)
        with torch.autocast(cond.device.type, enabled=False):
            cond = cond.to(self.net.cond_proj.weight.dtype)  # what autocast feeds the linear layers
            memory = self.net.memory(cond, text)
            steps = memory.shape[1]
            for index, layer in enumerate(self.stack.layers):
                attention = layer.encoder_attn
                getattr(self, f"cross_keys{index}")[:, :, :steps] = self._heads(self._linear(attention.k_proj, memory))
                getattr(self, f"cross_values{index}")[:, :, :steps] = self._heads(self._linear(attention.v_proj, memory))
            self.cross_valid.fill_(False)
            self.cross_valid[..., :steps] = True
            if self.net.aligned_proj is not None:
                aligned = self.net.aligned_features(cond)
                self.aligned[:, : aligned.shape[1]] = aligned
                self.aligned_last.fill_(aligned.shape[1] - 1)

    def compiled_step(self) -> Step:
        """One-position steps by `forward` compiled once (`torch.compile`, static shapes; on CUDA
        `reduce-overhead`, which also replays each step as a CUDA graph). The inputs are copied into
        the same buffers at every step, so a window's steps never recompile; past torch's recompile
        limit (many batch sizes in one process) dynamo runs the step eagerly, as it is."""
        if self._compiled is None:
            mode = "reduce-overhead" if self.key_positions.is_cuda else None
            compiled = torch.compile(self.forward, mode=mode, dynamic=False)

            def step(input_ids: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
                self.step_ids.copy_(input_ids)
                self.step_position.copy_(at)
                return compiled(self.step_ids, self.step_position)

            self._compiled = step
        return self._compiled

    @torch.no_grad()
    def graphed_step(self) -> Step:
        """One-position steps by `forward` replayed as one captured CUDA graph (no compilation: the
        capture takes one step's time). Inputs are copied into the graph's own; the logits returned
        are the graph's output buffer, overwritten by the next step."""
        if self._graphed is None:
            if not self.key_positions.is_cuda:
                raise RuntimeError("a CUDA graph needs the decoder on a CUDA device")
            # the capture writes the last position's keys/values: always rewritten before they are read
            self.step_position.copy_(self.key_positions[-1:])
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):  # warm-up: lazy initialisation and workspaces before capture
                    self(self.step_ids, self.step_position)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                logits = self(self.step_ids, self.step_position)

            def step(input_ids: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
                self.step_ids.copy_(input_ids)
                self.step_position.copy_(at)
                graph.replay()
                return logits

            self._graphed = step
        return self._graphed

    def _heads(self, states: torch.Tensor) -> torch.Tensor:
        """`[N, L, H * Dh]` -> `[N, H, L, Dh]`."""
        return states.view(*states.shape[:2], self.num_heads, self.head_dim).transpose(1, 2)

    @staticmethod
    def _linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        """`layer(x)` in the layer's weight dtype (autocast's cast of the input)."""
        return layer(x.to(layer.weight.dtype))

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        with torch.autocast(input_ids.device.type, enabled=False):
            return self._forward(input_ids, positions)

    def _forward(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        stack, linear = self.stack, self._linear
        hidden = sum(stack.embed_tokens[k](input_ids[:, k]) for k in range(input_ids.shape[1]))  # [N, L, D]
        hidden = hidden + stack.embed_positions.weights.index_select(0, positions).to(hidden.dtype)
        if self.net.aligned_proj is not None:
            hidden = hidden + self.net.aligned_condition(self.aligned, positions, self.aligned_last)
        causal = (self.key_positions[None, :] <= positions[:, None])[None, None]  # [1, 1, L, max_length]
        for index, layer in enumerate(stack.layers):
            attention = layer.self_attn
            normed = layer.self_attn_layer_norm(hidden)
            keys, values = getattr(self, f"keys{index}"), getattr(self, f"values{index}")
            keys.index_copy_(2, positions, self._heads(linear(attention.k_proj, normed)))
            values.index_copy_(2, positions, self._heads(linear(attention.v_proj, normed)))
            hidden = hidden + self._attend(attention, normed, keys, values, causal)
            normed = layer.encoder_attn_layer_norm(hidden)
            hidden = hidden + self._attend(layer.encoder_attn, normed, getattr(self, f"cross_keys{index}"),
                                           getattr(self, f"cross_values{index}"), self.cross_valid)
            normed = layer.final_layer_norm(hidden)
            hidden = hidden + linear(layer.fc2, layer.activation_fn(linear(layer.fc1, normed)))
        hidden = stack.layer_norm(hidden)
        return torch.stack([linear(head, hidden) for head in self.net.lm.lm_heads], dim=1)

    def _attend(self, attention: nn.Module, hidden: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """One attention block's output `[N, L, D]` for queries from `hidden` over cached `keys`/`values`."""
        query = self._heads(self._linear(attention.q_proj, hidden))
        out = F.scaled_dot_product_attention(query, keys, values, attn_mask=mask, scale=attention.scaling)
        return self._linear(attention.out_proj, out.transpose(1, 2).reshape(*hidden.shape[:2], -1))
