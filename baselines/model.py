"""The answerer X: encode a context once, answer many questions against it.

    facts (B, F, Lf) --embed tokens + role in fact, mix into one vector per fact-->
        encoder: self-attention over facts (no order: the facts are a set)
    questions (B, Q, Lq) --embed the same way-->
        decoder: each question attends to the fact states (questions do not see each other)
    output: a mixture of a vocabulary softmax and a pointer over every token of every fact
        (element names are per-episode labels, so the answer is usually copied out of a fact).
    pointer doubling: the encoder forms a "next fact" link from token equality (for a
        permutation: fact x->y links to fact y->z) and squares it (link^2, link^4, ...); every
        decoder layer keeps its current fact, re-points by content, or follows one of these
        maps, routed by the question (so s^k(x) takes one layer per bit of k, not k hops).
        Measured on permutation powering, size 8, supervised: 95% after 1,500 steps with it,
        77% after 1,900 without.
    relations: the link, and the fact a question starts from, are learned mixtures of exact
        token-equality relations ("token a of fact i is token b of fact j", each row
        normalised), not a softmax over learned weights of those features: a softmax weight
        must grow to several nats before the link is sharp, which took Adam 300-1,000 steps and
        was where every run sat at 33% (answering x). The mixture starts on the chain relation
        (last token of one fact = first token of the next; the question's last token = a fact's
        first), a prior it can unlearn. Measured on permutation powering, size 8, supervised,
        2 threads: seeds 0-2 pass 90% at step 400-500 and reach 98.1-99.0% at 800 (the softmax
        link: 88.2/90.5/57.6% after 1,300 steps).
    existence features: softmax attention averages over the facts it attends to, so it cannot
        tell "some fact matches both of the question's elements" (an edge a -> b exists) from
        "facts match one each". Every attention layer also adds, per head, the largest
        token-equality bias over the facts to the state. Measured, supervised, size 8, 400 steps:
        shortest path 29% (the answer prior) -> 74%, permutation powering 51% -> 56%.
    registers (option, off by default): each fact carries its tokens as one-hot distributions
        over the vocabulary plus `registers` extra ones; every encoder layer may copy, into each
        extra register, a token or register of the facts it attends to (a soft copy: the
        attention weights times the source's distribution), and compares registers with the
        facts' tokens as further equality features. So "the value assigned to this fact's
        operand" can be written into the fact and followed in the next layer, composing in the
        encoder what the decoder otherwise composes one hop per layer. The answer may also be
        read out of a register of the fact the decoder ends at. Measured on sequential
        assignment, size 8, supervised, 800 steps, 1 thread: seeds 0/1 82.7/51.2% without;
        with 3 registers and 4 encoder layers 82.9/84.0% (4 encoder layers alone: 42.6/64.3%),
        each step about 1.2x the cost.
    encoder loops (option, 1 = off): the encoder's layers are applied `encoder_loops` times with
        their weights shared, so with registers one program ("read my operands' values, look up
        f") can carry values one level further up a tree of assignments per loop. Measured on
        sequential assignment, size 8, supervised, seed 0, 1 thread, 3 registers, 2 layers x 6
        loops: 90% at step 1,300, 92.4% at 3,000 (the plain X: 82.7% at 800, 68.0% after 3
        minutes); about 2x the plain X's step cost.
    loop readout (option, a loss weight, 0 = off): registers and loops can hold the program
        "read my operands' values, look up f", but trained on the final answer alone they did
        not learn it: in the 92.4% model above, register 0..2 of a fact held its variable's value
        with probability 0.30-0.52 at every depth (chance: 1/3), so the answers came from the
        decoder's hops. With the option, `loss` adds, after every encoder loop, the negative
        log-likelihood of the training target read off the first extra register of the fact the
        question starts from (deep supervision: loop l can hold the values of depth < l, and the
        shared weights learn one level per loop). Measured on sequential assignment, size 8,
        supervised, seed 0, 1 thread, 3 registers, 2 layers x 6 loops, weight 1: 99.3% at step
        1,300, 99.5% at 1,500 (without: 90.8% at 1,300), register 0 then holding its fact's
        value with 0.997-0.999 of its mass at every depth; the readout of the last loop alone
        (a prototype): 92.1% at 1,500.
    readout answer (option, off by default; needs registers): X answers with the loop readout
        of the last loop, the first extra register of the question's start fact, and the decoder
        is not run. Found on ExIt (sequential assignment, size 8, seed 0, the options above,
        93.8% after 24 minutes): its last loop's readout was right on 99.7% of the test
        questions, its decoder's answers on 93.8% (6.9% of depth-0 questions wrong, whose
        register held the right value). Without the decoder a step costs about 0.6x. With it
        (and the options above): ExIt 99.6% at size 8 after 24 minutes; at size 16 with ten
        loops, IA 99.1% after 20 minutes and supervised 98.1% at best (one seed each).
    route initialisation (options, off by default): `route_stay_prior` is every decoder layer's
        initial logit for "stay at the current fact" over its other routes, `route_init_std` the
        std of the route weights that read the question state (default 0.02, like every weight).
        IA on permutation powering starts on k = 2, 3 alone. With the defaults the routes start
        near uniform over 8 options (the fact a question ends at is a blur) and k = 3 differs from
        k = 2 only through tiny weights: at size 16 X often learned k = 2 and stayed wrong on k = 3.
        `python -m baselines.first_level --seeds 0 1 2 3 4`: seeds 0-4 passed the first level at
        steps 496, -, -, 117, - (-: not within 500); with a stay prior of 3 and a std of 0.1 at
        240, 246, 122, 141, -. The prior alone passed 2 of seeds 0-2, the std alone 1 of 3.
    chain reach (option, off by default): for every question and fact, whether the fact reaches,
        within t = 0, 1, ..., `reach_hops` - 1 chain hops (fact f's last token is the next fact's
        first token), a fact whose last token is the question's last token, as `reach_hops` more
        equality features of the decoder. On a graph of edge facts `a -> b` that is "b is within
        t + 1 steps of this edge's start": a breadth-first search, which attention layers cannot
        do in one pass (supervised shortest path stalls at distance 4 without it).

Every answer in this project's tasks is one token (answer_len == 1), so the answer is one
classification over the vocabulary, computed for every question at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from baselines.validation import check_fields, check_range


@dataclass
class ModelConfig:
    d_model: int = 128
    n_heads: int = 4
    encoder_layers: int = 2
    decoder_layers: int = 6  # each decoder layer can chase one pointer hop
    d_ff: int = 256
    dropout: float = 0.0
    # pointer doubling: a learned "next fact" link, squared this many times in the encoder
    # (link^1, link^2, link^4, ...); each decoder layer may follow any of them (0 = off)
    doubling_levels: int = 6
    existence_features: bool = True  # per head, the best token-equality match over the facts
    # how the link and the start fact are formed: "relations" (a mixture of exact equality
    # relations) or "softmax" (a softmax over facts of learned weights on equality features)
    link: str = "relations"
    relation_scale: float = 10.0  # the mixture's logits are its weights times this (fast to sharpen)
    chain_prior: float = 0.3  # the chain relations' initial weight (x relation_scale: 3 nats)
    # the route reads the layer-normalised question state: read off the raw residual stream it
    # saturated within 200 IA steps on one route for every k (so no gradient, and stuck at 31%)
    route_norm: bool = True
    registers: int = 0  # extra per-fact registers the encoder may copy tokens into (0 = off)
    reach_hops: int = 0  # chain-reach features of the decoder, for 0 .. reach_hops - 1 hops (0 = off)
    encoder_loops: int = 1  # the encoder's layers applied this many times, weights shared
    # the routes' initialisation: the "stay at the current fact" option's initial logit over the
    # others, and the std of the weights that read the question state (see the module docstring)
    route_stay_prior: float = 0.0
    route_init_std: float = 0.02
    # loop readout (option, 0 = off): this weight times the deep-supervision loss of `loss`
    loop_readout: float = 0.0
    # readout answer (option): the answer is the first extra register of the question's start
    # fact after the last encoder loop (the loop readout's), the decoder left unused
    readout_answer: bool = False

    # Settings added after results were published, with the value that reproduces the model from
    # before they existed: a result file (which lists every setting) that lacks one trained that.
    # (relation_scale and chain_prior are unused by the "softmax" link.)
    BEFORE_ADDED: ClassVar[dict[str, Any]] = {
        "doubling_levels": 0,
        "existence_features": False,
        "link": "softmax",
        "relation_scale": 10.0,
        "chain_prior": 0.3,
        "route_norm": False,
        "registers": 0,
        "reach_hops": 0,
        "encoder_loops": 1,
        "route_stay_prior": 0.0,
        "route_init_std": 0.02,
        "loop_readout": 0.0,
        "readout_answer": False,
    }
    # Settings added after results were grouped by their full model settings: at their
    # BEFORE_ADDED value they are left out of setting ids (`naming_settings`), so the results from
    # before they existed keep their leaderboard rows. A setting added from now on goes here.
    UNNAMED_AT_BEFORE: ClassVar[tuple[str, ...]] = (
        "registers",
        "reach_hops",
        "encoder_loops",
        "route_stay_prior",
        "route_init_std",
        "loop_readout",
        "readout_answer",
    )
    LINKS: ClassVar[tuple[str, ...]] = ("relations", "softmax")

    def validate(self) -> None:
        for name, least in (("registers", 0), ("reach_hops", 0), ("encoder_loops", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"model setting {name} must be an integer >= {least}, got {value!r}")
        check_fields(self, "model setting ")
        if self.link not in self.LINKS:
            raise ValueError(f"model setting link must be one of {list(self.LINKS)}, got {self.link!r}")
        for name in ("d_model", "n_heads", "decoder_layers", "d_ff"):
            check_range(self, name, 1, prefix="model setting ")
        for name in ("encoder_layers", "doubling_levels", "route_init_std"):
            check_range(self, name, 0, prefix="model setting ")
        check_range(self, "relation_scale", 0, prefix="model setting ", open_low=True)
        if not 0 <= self.dropout < 1:
            raise ValueError(f"model setting dropout must be in [0, 1), got {self.dropout!r}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"model setting d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})"
            )
        if not isinstance(self.loop_readout, (int, float)) or self.loop_readout < 0:
            raise ValueError(f"model setting loop_readout must be a number >= 0, got {self.loop_readout!r}")
        if self.loop_readout and not self.registers:
            raise ValueError(
                "model setting loop_readout needs registers > 0 (it reads the answer from the first one)"
            )
        if not isinstance(self.readout_answer, bool):
            raise ValueError(
                f"model setting readout_answer must be true or false, got {self.readout_answer!r}"
            )
        if self.readout_answer and not self.registers:
            raise ValueError("model setting readout_answer needs registers > 0 (the answer is the first one)")
        if self.registers and not self.doubling_levels:
            raise ValueError(
                "model setting registers needs doubling_levels > 0 (the answer is read at its fact)"
            )

    # `small` (default, learns fast on a CPU) or `paper` (the paper's sizes)
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "small": {},
        "paper": {"d_model": 512, "n_heads": 8, "encoder_layers": 6, "decoder_layers": 3, "d_ff": 2048},
    }

    @classmethod
    def preset(cls, name: str) -> ModelConfig:
        if name not in cls.PRESETS:
            raise ValueError(f"unknown model preset {name!r}; choose from {sorted(cls.PRESETS)}")
        return cls(**cls.PRESETS[name])


def naming_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The model settings that tell a leaderboard row's setting apart: all, except those of
    `UNNAMED_AT_BEFORE` at the value that reproduces the model from before they existed."""
    unnamed, before = ModelConfig.UNNAMED_AT_BEFORE, ModelConfig.BEFORE_ADDED
    return {k: v for k, v in settings.items() if not (k in unnamed and v == before[k])}


class Block(nn.Module):
    """Pre-norm attention (self- or cross-) followed by an MLP, both residual."""

    def __init__(self, cfg: ModelConfig, match_features: int) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.match = nn.Linear(match_features, cfg.n_heads, bias=False)
        self.norm_q = nn.LayerNorm(cfg.d_model)
        self.norm_kv = nn.LayerNorm(cfg.d_model)
        self.q = nn.Linear(cfg.d_model, cfg.d_model)
        self.kv = nn.Linear(cfg.d_model, 2 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        self.norm_mlp = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model)
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.exists = nn.Linear(cfg.n_heads, cfg.d_model) if cfg.existence_features else None

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor, match: torch.Tensor
    ) -> torch.Tensor:
        """x (B, T, d) attends to memory (B, S, d); mask (B, S) is True where memory is real (or
        (B, T, S) per query, e.g. causal); match (B, T, S, P) are token-equality features (see
        `token_matches`)."""
        x, _ = self.attend(x, memory, mask, match)
        return x + self.dropout(self.mlp(self.norm_mlp(x)))

    def attend(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        mask: torch.Tensor,
        match: torch.Tensor,
        weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The attention half of `forward`, and with `weights` its attention weights (B, H, T, S)."""
        b, t, d = x.shape
        h = self.n_heads
        q = self.q(self.norm_q(x)).view(b, t, h, d // h).transpose(1, 2)
        k, v = self.kv(self.norm_kv(memory)).view(b, -1, 2, h, d // h).permute(2, 0, 3, 1, 4)
        bias = self.match(match).permute(0, 3, 1, 2)  # (B, H, T, S)
        keep = mask[:, None, None, :] if mask.dim() == 2 else mask[:, None, :, :]
        bias = bias.masked_fill(~keep, float("-inf"))
        probs = None
        if weights:
            probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // h) + bias, dim=-1)
            att = probs @ v
        else:
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        x = x + self.dropout(self.out(att.transpose(1, 2).reshape(b, t, d)))
        if self.exists is not None:  # whether any fact matches: (B, H, T) -> (B, T, d)
            x = x + self.exists(bias.amax(-1).transpose(1, 2))
        return x, probs


class RegisterBlock(Block):
    """An encoder block over facts that also writes the facts' extra registers (see the module
    docstring): register r of fact f becomes a softmax-weighted choice between keeping its
    value and reading source s (a token or register) of the facts that head h attends to."""

    def __init__(self, cfg: ModelConfig, fact_len: int) -> None:
        self.sources = fact_len + cfg.registers
        super().__init__(cfg, self.sources * fact_len)
        self.fact_len, self.registers = fact_len, cfg.registers
        self.norm_write = nn.LayerNorm(cfg.d_model)
        self.write = nn.Linear(cfg.d_model, cfg.registers * (1 + cfg.n_heads * self.sources))
        self.write_scale = cfg.relation_scale  # like the relations: sharp within few steps

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, mask: torch.Tensor, regs: torch.Tensor, onehot: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, F, d) fact states, regs (B, F, Lf + R, V) their registers, onehot (B, F, Lf, V)
        their tokens; returns the new states and registers."""
        match = register_matches(regs, onehot)
        x, probs = self.attend(x, x, mask, match, weights=True)
        b, f, s, v = regs.shape
        reads = torch.einsum("bhfg,bgsv->bfhsv", probs, regs).reshape(b, f, -1, v)
        logits = self.write(self.norm_write(x)).view(b, f, self.registers, -1) * self.write_scale
        choice = torch.softmax(logits, dim=-1)  # (B, F, R, 1 + H * S): keep, or read one source
        extra = regs[:, :, self.fact_len :]
        written = choice[..., :1] * extra + torch.einsum("bfro,bfov->bfrv", choice[..., 1:], reads)
        regs = torch.cat([regs[:, :, : self.fact_len], written], dim=2)
        return x + self.dropout(self.mlp(self.norm_mlp(x))), regs


# Token-equality features are scaled up so that their weights reach useful attention biases
# (several nats) within a few hundred Adam steps, like a larger learning rate for them.
MATCH_SCALE = 8.0


def token_matches(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, A, C, La * Lb) float: 1 where token i of a[:, x] equals token j of b[:, y] (not PAD).

    Element names are arbitrary per-episode labels: what carries meaning is which facts and
    questions mention the same element. These features let attention use that directly."""
    same = (a[:, :, None, :, None] == b[:, None, :, None, :]) & (a != 0)[:, :, None, :, None]
    return same.flatten(3).float() * MATCH_SCALE


def register_matches(regs: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """(B, F, F, S * Lf): how much register s of fact f equals token j of fact g, from registers
    (B, F, S, V) and one-hot fact tokens (B, F, Lf, V); the first Lf * Lf features, where the
    registers are the facts' own tokens, are `token_matches(facts, facts)`."""
    same = torch.einsum("bfsv,bgjv->bfgsj", regs, onehot)
    return same.flatten(3) * MATCH_SCALE


def chain_reach(facts: torch.Tensor, questions: torch.Tensor, hops: int) -> torch.Tensor:
    """(B, Q, F, hops) float: 1 where fact f reaches, within t chain hops (t = 0 .. hops - 1; a hop
    goes from a fact to one whose first token is its last token), a fact whose last token is
    question q's last token (not PAD). Cumulative in t, times MATCH_SCALE like `token_matches`."""
    first, last = facts[..., 0], facts[..., -1]  # (B, F)
    target = questions[..., -1]  # (B, Q)
    step = ((last[:, :, None] == first[:, None, :]) & (last != 0)[:, :, None]).float()  # (B, F, G)
    within = ((last[:, None, :] == target[:, :, None]) & (target != 0)[:, :, None]).float()
    reached = [within]
    for _ in range(1, hops):
        within = torch.maximum(within, (within @ step.transpose(1, 2)).clamp(max=1.0))
        reached.append(within)
    return torch.stack(reached, dim=-1) * MATCH_SCALE


def trim_padding(facts: torch.Tensor) -> torch.Tensor:
    """facts (B, F, Lf) without the trailing fact slots that are padding in every context of the
    batch. X has no positions and masks padding, so its answers do not change; a small context
    held in a large one's shapes (the size curriculum: size 8 in size 64's 64 slots) then costs
    what its own facts cost."""
    real = (facts != 0).any(-1).any(0).nonzero()
    return facts[:, : int(real.max()) + 1] if len(real) else facts[:, :1]


def mix_relations(
    match: torch.Tensor, mask: torch.Tensor, logits: torch.Tensor, empty: torch.Tensor
) -> torch.Tensor:
    """sum_r softmax(logits)_r R_r (B, T, F): R_r (B, T, F) is relation r of the equality features
    `match` (B, T, F, R) ("this token of t is that token of fact f") restricted to real facts and
    normalised over facts; where a row of R_r is empty, `empty` (broadcast to (B, T, F)) stands in."""
    rel = (match > 0).float() * mask[:, None, :, None]
    count = rel.sum(2, keepdim=True)
    rel = torch.where(count > 0, rel / count.clamp_min(1.0), empty[..., None])
    return rel @ torch.softmax(logits, dim=0)


class Pointer(nn.Module):
    """Logits over every fact token (B, T, F * Lf): content (query . key) plus a learned bias from
    token-equality features, so "the token next to the one that matches x" is easy to point at."""

    def __init__(self, d_model: int, match_features: int, fact_len: int) -> None:
        super().__init__()
        self.query = nn.Linear(d_model, d_model)
        self.match = nn.Linear(match_features, fact_len, bias=False)

    def forward(
        self, x: torch.Tensor, keys: torch.Tensor, match: torch.Tensor, pad: torch.Tensor
    ) -> torch.Tensor:
        b, t, _ = x.shape
        logits = self.query(x) @ keys.transpose(1, 2) / math.sqrt(x.shape[-1])
        logits = logits + self.match(match).reshape(b, t, -1)
        return logits.masked_fill(pad[:, None, :], float("-inf"))


def copy_mixture(
    vocab_logits: torch.Tensor,
    pointer_logits: torch.Tensor,
    tokens: torch.Tensor,
    register_logits: torch.Tensor | None = None,
    register_values: torch.Tensor | None = None,
) -> torch.Tensor:
    """Log-probabilities (B, T, V) of one softmax over the vocabulary (B, T, V) and a pointer over
    `tokens` (B, P) (logits (B, T, P)): pointing at a token outputs that token. With registers
    (logits (B, T, R), values (B, T, R, V), each at most a distribution), choosing register r
    outputs its value; what an empty register holds back is renormalised away."""
    vocab_size, p_size = vocab_logits.shape[-1], pointer_logits.shape[-1]
    parts = [vocab_logits, pointer_logits] + ([register_logits] if register_logits is not None else [])
    probs = torch.softmax(torch.cat(parts, dim=-1), dim=-1)
    p_vocab, p_pointer = probs[..., :vocab_size], probs[..., vocab_size : vocab_size + p_size]
    p = p_vocab.scatter_add(-1, tokens[:, None, :].expand(-1, vocab_logits.shape[1], -1), p_pointer)
    if register_logits is not None:
        p = p + torch.einsum("btr,btrv->btv", probs[..., vocab_size + p_size :], register_values)
        p = p / p.sum(-1, keepdim=True)
    return torch.log(p.clamp_min(1e-12))


class Answerer(nn.Module):
    """X. `forward(facts, questions)` returns log-probabilities (B, Q, vocab) of the answer token."""

    def __init__(self, cfg: ModelConfig, vocab_size: int, fact_len: int, question_len: int) -> None:
        super().__init__()
        d = cfg.d_model
        self.cfg, self.vocab_size, self.fact_len = cfg, vocab_size, fact_len
        self.embed = nn.Embedding(vocab_size, d)
        self.fact_role = nn.Parameter(torch.randn(fact_len, d) * 0.02)  # role of a token in its fact
        self.question_role = nn.Parameter(torch.randn(question_len, d) * 0.02)
        self.fact_mix = nn.Linear(fact_len * d, d)  # one vector per fact, roles kept apart
        self.question_mix = nn.Linear(question_len * d, d)
        if cfg.registers:
            self.encoder = nn.ModuleList(RegisterBlock(cfg, fact_len) for _ in range(cfg.encoder_layers))
            self.register_head = nn.Linear(d, cfg.registers)  # answer: a register of the final fact
        else:
            self.encoder = nn.ModuleList(Block(cfg, fact_len * fact_len) for _ in range(cfg.encoder_layers))
        # decoder features: question-token/fact-token equality, and where the previous layer's
        # pointer's element occurs in the facts ("pointer chasing": one hop per layer)
        match_features = question_len * fact_len + cfg.reach_hops + fact_len
        self.decoder = nn.ModuleList(Block(cfg, match_features) for _ in range(cfg.decoder_layers))
        self.chase = nn.ModuleList(Pointer(d, match_features, fact_len) for _ in range(cfg.decoder_layers))
        self.norm = nn.LayerNorm(d)
        self.vocab_head = nn.Linear(d, vocab_size)
        self.pointer = Pointer(d, match_features, fact_len)
        self.pointer_key = nn.Linear(d, d)
        self.levels = cfg.doubling_levels
        if self.levels and cfg.link == "relations":  # weights of the relations (see mix_relations)
            self.link_relations = nn.Parameter(torch.zeros(fact_len * fact_len))
            self.start_relations = nn.Parameter(torch.zeros(question_len * fact_len))
        elif self.levels:
            self.link = nn.Linear(fact_len * fact_len, 1)  # fact -> next fact, from token equality
            self.start = nn.Linear(question_len * fact_len, 1)  # the fact the question is about
        if self.levels:
            self.route = nn.ModuleList(nn.Linear(d, 2 + self.levels) for _ in range(cfg.decoder_layers))
        self.apply(self._init)
        if self.levels and cfg.link == "relations":  # start on the chains (see mix_relations)
            with torch.no_grad():
                self.link_relations[(fact_len - 1) * fact_len] = cfg.chain_prior
                self.start_relations[(question_len - 1) * fact_len] = cfg.chain_prior
        if self.levels:  # route initialisation; at the defaults the weights stay as _init drew them
            redraw = cfg.route_init_std != ModelConfig.BEFORE_ADDED["route_init_std"]
            with torch.no_grad():
                for route in self.route:
                    if redraw:
                        route.weight.normal_(0.0, cfg.route_init_std)
                    route.bias[0] = cfg.route_stay_prior

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def encoder_passes(self) -> list[nn.Module]:
        """The encoder's blocks in the order applied: all of them, `encoder_loops` times over."""
        return list(self.encoder) * self.cfg.encoder_loops

    def encode(self, facts: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """Fact states (B, F, d), fact mask (B, F), pointer keys (B, F * Lf, d), with doubling
        the maps (B, levels, F, F): fact -> fact of link^(2^l), and with registers the extra
        registers (B, F, R, V). F is after `trim_padding`. Inputs may be on the CPU: they are
        moved to the model's device."""
        return self.encode_with_loops(facts)[0]

    def encode_with_loops(
        self, facts: torch.Tensor
    ) -> tuple[tuple[torch.Tensor | None, ...], list[torch.Tensor]]:
        """`encode`'s memory, and with registers the first extra register (B, F, V) of every fact
        after each encoder loop (for `loss`'s loop readout; an empty list without registers)."""
        facts = trim_padding(facts.to(self.fact_role.device))
        b, f, lf = facts.shape
        tokens = self.embed(facts) + self.fact_role  # (B, F, Lf, d)
        mask = (facts != 0).any(-1)
        mask = mask | ~mask.any(-1, keepdim=True)  # an empty context attends to its padding
        x = self.fact_mix(tokens.reshape(b, f, -1))
        regs, loop_values = None, []
        if self.cfg.registers:  # the facts' own tokens, then the extra registers (empty)
            onehot = F.one_hot(facts, self.vocab_size).float() * (facts != 0)[..., None]
            regs = torch.cat([onehot, onehot.new_zeros(b, f, self.cfg.registers, self.vocab_size)], 2)
            for i, block in enumerate(self.encoder_passes(), 1):
                x, regs = block(x, mask, regs, onehot)
                if i % len(self.encoder) == 0:  # the end of a loop
                    loop_values.append(regs[:, :, lf])
            regs = regs[:, :, lf:]
            match = None
        else:
            match = token_matches(facts, facts) if self.encoder else None
            for block in self.encoder_passes():
                x = block(x, x, mask, match)
        keys = self.pointer_key(tokens + x[:, :, None, :]).reshape(b, f * lf, -1)
        if not self.levels:
            return (x, mask, keys, None, None), loop_values
        if match is None:
            match = token_matches(facts, facts)
        if self.cfg.link == "relations":  # a fact that no relation r links anywhere stays put
            stay = torch.eye(f, dtype=x.dtype, device=x.device)[None]
            link = mix_relations(match, mask, self.link_relations * self.cfg.relation_scale, stay)
        else:
            logits = self.link(match).squeeze(-1).masked_fill(~mask[:, None, :], float("-inf"))
            link = torch.softmax(logits, dim=-1)
        maps = [link]  # (B, F, F): a soft "next fact" for every fact
        for _ in range(1, self.levels):
            maps.append(maps[-1] @ maps[-1])  # link^(2^l) by repeated squaring
        return (x, mask, keys, torch.stack(maps, dim=1), regs), loop_values

    def start_fact(self, question_match: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The fact each question starts from (B, Q, F), from question/fact token equality
        (B, Q, F, Lq * Lf) and the fact mask (B, F); needs doubling."""
        if self.cfg.link == "relations":  # a relation the question has no fact in: no opinion
            anywhere = (mask / mask.sum(-1, keepdim=True))[:, None, :]
            return mix_relations(
                question_match, mask, self.start_relations * self.cfg.relation_scale, anywhere
            )
        start = self.start(question_match).squeeze(-1).masked_fill(~mask[:, None, :], float("-inf"))
        return torch.softmax(start, dim=-1)

    def decode(
        self,
        memory: tuple[torch.Tensor | None, ...],
        facts: torch.Tensor,
        questions: torch.Tensor,
    ) -> torch.Tensor:
        """Log-probabilities (B, Q, vocab) of the answers to questions (B, Q, Lq), from `encode`'s
        memory of the same facts."""
        states, mask, keys, maps, regs = memory
        facts = trim_padding(facts.to(states.device))
        questions = questions.to(states.device)
        question_match = token_matches(questions, facts)  # (B, Q, F, Lq * Lf)
        if self.cfg.readout_answer:  # the start fact's first extra register (see `loss`)
            value = torch.einsum("bqf,bfv->bqv", self.start_fact(question_match, mask), regs[:, :, 0])
            return torch.log((value / value.sum(-1, keepdim=True).clamp_min(1e-12)).clamp_min(1e-12))
        b, q, _ = questions.shape
        f, lf = facts.shape[1:]
        fact_tokens = facts.reshape(b, -1)
        pad = fact_tokens == 0
        pad = pad & ~pad.all(-1, keepdim=True)  # an empty context: point anywhere, not at nothing
        if maps is None:  # where each fact token recurs (B, P, P): hop-by-hop chasing needs it
            same = ((fact_tokens[:, :, None] == fact_tokens[:, None, :]) & ~pad[:, :, None]).float()
        x = self.question_mix((self.embed(questions) + self.question_role).reshape(b, q, -1))
        features = question_match  # what the decoder's attention and pointers see of each fact
        if self.cfg.reach_hops:
            features = torch.cat([question_match, chain_reach(facts, questions, self.cfg.reach_hops)], -1)
        chased = question_match.new_zeros(b, q, f, lf)
        if maps is not None:  # the fact the question starts from (B, Q, F)
            current = self.start_fact(question_match, mask)
        for layer, (block, chase) in enumerate(zip(self.decoder, self.chase, strict=True)):
            match = torch.cat([features, chased], dim=-1)
            x = block(x, states, mask, match)
            where = torch.softmax(chase(x, keys, match, pad), dim=-1)  # (B, Q, P)
            if maps is None:
                chased = (where @ same).reshape(b, q, f, lf) * MATCH_SCALE
                continue
            # stay at the current fact, move to the one pointed at by content, or follow the
            # link 1, 2, 4, ... times (the route is read off the question, e.g. k's bits)
            state = F.layer_norm(x, x.shape[-1:]) if self.cfg.route_norm else x
            route = torch.softmax(self.route[layer](state), dim=-1)  # (B, Q, 2 + levels)
            followed = torch.einsum("bqf,blfg->lbqg", current, maps)
            options = [current, where.reshape(b, q, f, lf).sum(-1), *followed]
            current = sum(route[..., i, None] * option for i, option in enumerate(options))
            chased = current[..., None].expand(-1, -1, -1, lf) * MATCH_SCALE
        x = self.norm(x)
        vocab_logits = self.vocab_head(x)  # (B, Q, V)
        pointer_logits = self.pointer(x, keys, torch.cat([features, chased], dim=-1), pad)
        if regs is None:
            return copy_mixture(vocab_logits, pointer_logits, fact_tokens)
        values = torch.einsum("bqf,bfrv->bqrv", current, regs)  # the registers of the final fact
        return copy_mixture(vocab_logits, pointer_logits, fact_tokens, self.register_head(x), values)

    def forward(self, facts: torch.Tensor, questions: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(facts), facts, questions)

    def loss(
        self,
        facts: torch.Tensor,
        questions: torch.Tensor,
        targets: torch.Tensor,
        keep: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The training loss for answers `targets` (B * Q,) to `questions` (B, Q, Lq), over the
        questions where `keep` (B * Q,) is True (default all): the answers' negative
        log-likelihood, plus with `loop_readout` that weight times the loop readout's (see the
        module docstring). Returns the loss and the log-probabilities (B * Q, V) of every
        question. Every method trains X through this."""
        memory, loop_values = self.encode_with_loops(facts)
        logp = self.decode(memory, facts, questions).reshape(len(targets), -1)
        targets = targets.to(logp.device)
        if keep is not None:
            keep = keep.to(logp.device)
            if not bool(keep.any()):
                return logp.sum() * 0.0, logp
        kept = slice(None) if keep is None else keep
        loss = F.nll_loss(logp[kept], targets[kept])
        if self.cfg.loop_readout:
            facts = trim_padding(facts.to(logp.device))
            start = self.start_fact(token_matches(questions.to(logp.device), facts), memory[1]).detach()
            values = torch.einsum("bqf,lbfv->lbqv", start, torch.stack(loop_values))  # (L, B, Q, V)
            values = values.flatten(1, 2)[:, kept]
            read = values.gather(-1, targets[kept][None, :, None].expand(len(values), -1, 1))
            loss = loss + self.cfg.loop_readout * -torch.log(read.clamp_min(1e-6)).mean()
        return loss, logp
