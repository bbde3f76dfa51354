"""Decision Transformer for discrete actions, and the Feedback Decision Transformer (FDT) loss, in one file.

Decision Transformer (Chen et al., 2021): a causal transformer over (return-to-go, state, action) tokens
predicts each action from the tokens before it; at test time it is conditioned on a target return.
FDT (Giladi & Katz) adds oracle feedback at important states (:mod:`critwrap.feedback.oracle`) to the
loss, :func:`fdt_loss`:

* cross-entropy on every position except those with negative feedback, plus
* ``lambda`` times the mean, over the positions with feedback, of: positive feedback ->
  ``-log pi(a_logged)``; negative feedback -> ``-log pi(a_best)`` with ``a_best`` the state's
  best-return-to-go action, falling back to ``-log(1 - pi(a_logged))`` where there is none (or it is
  the logged action itself).

``feedback_mode`` (:data:`FEEDBACK_MODES`) picks what negative feedback does: ``"best-action"`` (the
default, above); ``"positive-only"``, the official code's ``ignore_negative_feedback_regularization``
(negative-feedback positions go back into the cross-entropy like unlabelled ones, and the feedback term
is ``-log pi(a_logged)`` averaged over the positive positions only); ``"fallback"``, negative feedback is
always ``-log(1 - pi(a_logged))`` and no best action is used (the official code's loss when no state of
the batch has a best action, its "random feedback selection mode").

BC is the same network without return tokens (the official code's ``naive`` model type), see
:mod:`critwrap.feedback.bc`. Read top to bottom: :class:`DTArgs` (every argument), observation
preprocessing (:class:`ObsSpec`), state encoders, the transformer, :func:`fdt_loss`, :func:`train`,
:func:`load_policy`. Details follow the official FDT code (liadgiladi/feedback-decision-transformer,
itself minGPT-based DT): tanh token embeddings, a global (episode timestep of the window's first step)
plus a local positional embedding, AdamW (betas 0.9 / 0.95, weight decay 0.1 on Linear / Conv weights
only), gradient clipping at 1, linear warm-up then cosine decay to 10% counted in action tokens, windows
that end inside their episode, the feedback term divided by the number of feedback positions of the
batch, and the best action used on negative feedback only when it differs from the logged one. One
difference: where the official code puts a negative-feedback position without a usable best action back
into the cross-entropy (when other positions of the batch have best actions), this one uses the
``-log(1 - pi(a_logged))`` fallback, as the method's description states.

Example:
    >>> import tempfile, numpy as np
    >>> from critwrap.episodes import Episode
    >>> from critwrap.feedback.dt import DTArgs, train, load_policy
    >>> eps = [Episode(np.eye(3, dtype=np.float32)[[0, 1, 2]], actions=[0, 1, 2], rewards=[0, 0, 1])] * 4
    >>> run = train(DTArgs(data=eps, out=tempfile.mkdtemp(), epochs=2, batch_size=4, context_length=3,
    ...                    n_layer=1, n_head=1, n_embd=16, progress=False, tensorboard=False))
    >>> load_policy(run).config["algo"]
    'dt'
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from critwrap.feedback.data import DatasetError, OfflineData

__all__ = [
    "ALGOS",
    "FEEDBACK_MODES",
    "DTArgs",
    "DecisionTransformer",
    "ObsSpec",
    "OfflinePolicy",
    "fdt_loss",
    "load_policy",
    "train",
]

ALGOS = ("dt", "fdt", "bc")
FEEDBACK_MODES = ("best-action", "positive-only", "fallback")
RUN_FORMAT = "critwrap.offline-run"
RUN_VERSION = 1


# --------------------------------------------------------------------------------------------------
# 1. Arguments
# --------------------------------------------------------------------------------------------------
@dataclass
class DTArgs:
    """Everything :func:`train` takes. Defaults are the official FDT / DT Atari settings (context 30,
    batch 128, lr 6e-4, 5 epochs, 6 layers x 8 heads x 128); shrink the network on a CPU."""

    data: Any = ""  # an EpisodeStore folder, minari:ID, a Minari folder, or a list of Episodes
    out: str = ""  # the run directory to write
    algo: str = "dt"  # "dt", "fdt" (needs feedback) or "bc" (no return tokens)
    feedback: str | None = None  # FeedbackLabels file (fdt)
    feedback_lambda: float = 0.01  # lambda of the feedback term (the paper searched 1e-1 .. 1e-4)
    feedback_mode: str = "best-action"  # what negative feedback does, one of FEEDBACK_MODES (fdt)
    seed: int = 0
    epochs: int = 5
    max_steps: int | None = None  # stop after this many updates (None: the epochs decide)
    batch_size: int = 128
    context_length: int = 30
    lr: float = 6e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    lr_decay: bool = True  # warm-up over warmup_tokens, cosine decay to 10% at 2 * N * K * 3 tokens
    warmup_tokens: int = 512 * 20
    n_layer: int = 6
    n_head: int = 8
    n_embd: int = 128
    dropout: float = 0.1
    encoder: str = "auto"  # "auto", "nature" (84x84 stacks), "small" (MiniGrid images), "mlp" (vectors)
    rtg_scale: float | None = None  # returns-to-go are divided by this (None: the largest |return|)
    device: str = "cpu"
    num_threads: int | None = None
    log_interval: int = 20  # updates between TensorBoard / CSV points
    progress: bool = True  # tqdm bar
    tensorboard: bool = True  # SummaryWriter under OUT/tb
    overwrite: bool = False


# --------------------------------------------------------------------------------------------------
# 2. Observations: layout and scaling, decided once from the data and stored with the run
# --------------------------------------------------------------------------------------------------
@dataclass
class ObsSpec:
    """How stored observations become network inputs: images (C, H, W) scaled by ``scale``, or flat
    standardized vectors. ``raw_shape`` is one observation as stored."""

    kind: str  # "image" | "vector"
    raw_shape: tuple[int, ...]
    channels_last: bool = False
    scale: float = 1.0
    mean: list[float] | None = None
    std: list[float] | None = None

    @classmethod
    def from_data(cls, observations: np.ndarray) -> ObsSpec:
        raw = tuple(int(s) for s in observations.shape[1:])
        is_int = np.issubdtype(observations.dtype, np.integer)
        if len(raw) == 3 or (len(raw) == 2 and is_int and min(raw) > 4):
            cl = len(raw) == 3 and raw[-1] <= 4 < raw[0]
            scale = float(max(1, int(observations.max()))) if is_int else 1.0
            return cls("image", raw, channels_last=cl, scale=scale)
        flat = observations.reshape(len(observations), -1).astype(np.float64)
        std = flat.std(axis=0)
        std[std < 1e-6] = 1.0
        return cls("vector", raw, mean=flat.mean(axis=0).tolist(), std=std.tolist())

    @property
    def input_shape(self) -> tuple[int, ...]:
        if self.kind == "vector":
            return (int(np.prod(self.raw_shape)),)
        if len(self.raw_shape) == 2:
            return (1, *self.raw_shape)
        if self.channels_last:
            h, w, c = self.raw_shape
            return (c, h, w)
        return self.raw_shape

    def to_tensor(self, obs: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
        """``obs`` (..., *raw_shape) -> float tensor (..., *input_shape)."""
        lead = obs.shape[: obs.ndim - len(self.raw_shape)]
        if tuple(obs.shape[len(lead) :]) != self.raw_shape:
            raise ValueError(
                f"observations of shape {obs.shape[len(lead) :]} given, the policy was trained on {self.raw_shape}"
            )
        x = torch.as_tensor(np.ascontiguousarray(obs), device=device).float()
        if self.kind == "vector":
            x = x.reshape(*lead, -1)
            mean = torch.as_tensor(self.mean, dtype=torch.float32, device=device)
            std = torch.as_tensor(self.std, dtype=torch.float32, device=device)
            return (x - mean) / std
        if len(self.raw_shape) == 2:
            x = x.unsqueeze(-3)
        elif self.channels_last:
            x = x.movedim(-1, -3)
        return x / self.scale

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ObsSpec:
        return cls(**{**d, "raw_shape": tuple(d["raw_shape"])})


# --------------------------------------------------------------------------------------------------
# 3. State encoders: one state -> one n_embd token
# --------------------------------------------------------------------------------------------------
def nature_cnn(channels: int, height: int, width: int, n_embd: int) -> nn.Module:
    """The DQN / official DT-Atari encoder (for 84x84 frame stacks; needs >= 36x36)."""
    convs = nn.Sequential(
        nn.Conv2d(channels, 32, 8, stride=4), nn.ReLU(),
        nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
        nn.Flatten(),
    )  # fmt: skip
    with torch.no_grad():
        n_flat = convs(torch.zeros(1, channels, height, width)).shape[1]
    return nn.Sequential(convs, nn.Linear(n_flat, n_embd), nn.Tanh())


def small_cnn(channels: int, height: int, width: int, n_embd: int) -> nn.Module:
    """Small images. Under 16 pixels (MiniGrid's 7x7 symbolic view) the MiniGrid baselines' CNN (2x2
    convolutions, 16-32-64 channels, one max-pool); from 16 pixels on, two stride-2 3x3 convolutions."""
    if min(height, width) < 16:
        layers: list[nn.Module] = [nn.Conv2d(channels, 16, 2), nn.ReLU()]
        if min(height, width) >= 5:
            layers.append(nn.MaxPool2d(2))
        layers += [nn.Conv2d(16, 32, 2, padding=1 if min(height, width) < 5 else 0), nn.ReLU()]
        layers += [nn.Conv2d(32, 64, 2, padding=1 if min(height, width) < 5 else 0), nn.ReLU(), nn.Flatten()]
        convs = nn.Sequential(*layers)
    else:
        convs = nn.Sequential(
            nn.Conv2d(channels, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(),
        )  # fmt: skip
    with torch.no_grad():
        n_flat = convs(torch.zeros(1, channels, height, width)).shape[1]
    return nn.Sequential(convs, nn.Linear(n_flat, n_embd), nn.Tanh())


def mlp_encoder(dim: int, n_embd: int) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(dim, n_embd), nn.ReLU(), nn.Linear(n_embd, n_embd), nn.Tanh()
    )


def make_encoder(obs: ObsSpec, n_embd: int, name: str = "auto") -> tuple[nn.Module, str]:
    shape = obs.input_shape
    if name == "auto":
        name = "mlp" if obs.kind == "vector" else ("nature" if min(shape[1:]) >= 36 else "small")
    if name == "mlp":
        return mlp_encoder(int(np.prod(shape)), n_embd), name
    if obs.kind != "image":
        raise ValueError(
            f"encoder {name!r} needs image observations; these are vectors of shape {obs.raw_shape}"
        )
    if name == "nature":
        if min(shape[1:]) < 36:
            raise ValueError(
                f"the nature encoder needs images of at least 36x36, got {shape}; use encoder='small'"
            )
        return nature_cnn(shape[0], shape[1], shape[2], n_embd), name
    if name == "small":
        return small_cnn(shape[0], shape[1], shape[2], n_embd), name
    raise ValueError(f"encoder must be 'auto', 'nature', 'small' or 'mlp', got {name!r}")


# --------------------------------------------------------------------------------------------------
# 4. The transformer
# --------------------------------------------------------------------------------------------------
class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention and a 4x MLP, each on a residual path."""

    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
        self.n_head, self.dropout = n_head, dropout
        self.ln1, self.ln2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd))
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        y = y.transpose(1, 2).reshape(B, T, C)
        x = x + self.resid_drop(self.proj(y))
        return x + self.resid_drop(self.mlp(self.ln2(x)))


class DecisionTransformer(nn.Module):
    """Tokens ``[R_1, s_1, a_1, R_2, s_2, a_2, ...]`` (``use_returns=False``: ``[s_1, a_1, ...]``, BC);
    the output at each state token gives that step's action logits.

    ``forward(obs (B, K, *input_shape), actions (B, K), rtg (B, K) scaled, timestep (B,)) -> (B, K, A)``.
    The action at the last position may be anything: causal attention keeps it out of every prediction.
    """

    def __init__(
        self,
        obs: ObsSpec,
        n_actions: int,
        context_length: int,
        max_timestep: int,
        *,
        n_layer: int = 6,
        n_head: int = 8,
        n_embd: int = 128,
        dropout: float = 0.1,
        encoder: str = "auto",
        use_returns: bool = True,
    ) -> None:
        super().__init__()
        self.obs_spec, self.n_actions, self.context_length = obs, int(n_actions), int(context_length)
        self.max_timestep, self.use_returns, self.n_embd = int(max_timestep), bool(use_returns), int(n_embd)
        self.tokens_per_step = 3 if use_returns else 2
        self.pos_emb = nn.Parameter(torch.zeros(1, self.tokens_per_step * self.context_length, n_embd))
        self.global_pos_emb = nn.Parameter(torch.zeros(1, self.max_timestep + 1, n_embd))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*[Block(n_embd, n_head, dropout) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, self.n_actions, bias=False)
        self.apply(self._init_weights)  # as minGPT / the official code: before the embeddings below exist
        self.state_encoder, self.encoder_name = make_encoder(obs, n_embd, encoder)
        self.ret_emb = nn.Sequential(nn.Linear(1, n_embd), nn.Tanh())
        action_table = nn.Embedding(self.n_actions, n_embd)
        nn.init.normal_(action_table.weight, mean=0.0, std=0.02)
        self.action_emb = nn.Sequential(action_table, nn.Tanh())

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.zeros_(module.bias)
            nn.init.ones_(module.weight)

    def forward(
        self, obs: torch.Tensor, actions: torch.Tensor, rtg: torch.Tensor, timestep: torch.Tensor
    ) -> torch.Tensor:
        B, K = actions.shape
        if K > self.context_length:
            raise ValueError(f"a window of {K} steps is longer than the context length {self.context_length}")
        states = self.state_encoder(obs.reshape(B * K, *obs.shape[2:])).reshape(B, K, self.n_embd)
        acts = self.action_emb(actions.long())
        if self.use_returns:
            rets = self.ret_emb(rtg.reshape(B, K, 1).float())
            tokens = torch.stack([rets, states, acts], dim=2).reshape(B, 3 * K, self.n_embd)
        else:
            tokens = torch.stack([states, acts], dim=2).reshape(B, 2 * K, self.n_embd)
        t0 = timestep.long().clamp(0, self.max_timestep)
        pos = self.global_pos_emb[0, t0].unsqueeze(1) + self.pos_emb[:, : tokens.shape[1]]
        x = self.ln_f(self.blocks(self.drop(tokens + pos)))
        state_slot = 1 if self.use_returns else 0
        return self.head(x[:, state_slot :: self.tokens_per_step])  # type: ignore[no-any-return]

    def config(self) -> dict[str, Any]:
        blocks: Any = self.blocks
        return {
            "n_actions": self.n_actions,
            "context_length": self.context_length,
            "max_timestep": self.max_timestep,
            "n_layer": len(blocks),
            "n_head": blocks[0].n_head if len(blocks) else 1,
            "n_embd": self.n_embd,
            "dropout": float(self.drop.p),
            "encoder": self.encoder_name,
            "use_returns": self.use_returns,
        }


# --------------------------------------------------------------------------------------------------
# 5. The loss: DT cross-entropy plus FDT's feedback term
# --------------------------------------------------------------------------------------------------
def fdt_loss(
    logits: torch.Tensor,
    actions: torch.Tensor,
    mask: torch.Tensor,
    feedback: torch.Tensor | None = None,
    best_action: torch.Tensor | None = None,
    feedback_lambda: float = 0.0,
    mode: str = "best-action",
) -> tuple[torch.Tensor, dict[str, float]]:
    """The FDT loss (plain DT cross-entropy without feedback or with ``feedback_lambda == 0``).

    Args:
        logits: (B, K, A) action logits; actions: (B, K) logged actions; mask: (B, K) True on real steps.
        feedback: (B, K) 1 positive, 0 negative, -1 none. best_action: (B, K) best-return-to-go action of
            labelled states, -1 for none.
        feedback_lambda: weight of the feedback term.
        mode: what negative feedback does (:data:`FEEDBACK_MODES`): ``"best-action"`` ->
            ``-log pi(a_best)``, else ``-log(1 - pi(a_logged))``; ``"fallback"`` -> always
            ``-log(1 - pi(a_logged))``; ``"positive-only"`` -> nothing: the position stays in the
            cross-entropy and the term is averaged over the positive positions only.

    Returns:
        ``(loss, parts)`` with ``parts`` = ``ce``, ``feedback_term``, ``n_feedback`` (floats, for logging;
        ``n_feedback`` counts the positions the term is averaged over).
    """
    if mode not in FEEDBACK_MODES:
        raise ValueError(f"feedback mode must be one of {', '.join(FEEDBACK_MODES)}, got {mode!r}")
    A = logits.shape[-1]
    flat_logits, flat_actions, flat_mask = (
        logits.reshape(-1, A),
        actions.reshape(-1).long(),
        mask.reshape(-1).bool(),
    )
    use_feedback = feedback is not None and feedback_lambda != 0.0
    fb = feedback.reshape(-1).long() if feedback is not None else None
    drop_negatives = use_feedback and fb is not None and mode != "positive-only"
    ce_mask = flat_mask & (fb != 0) if (drop_negatives and fb is not None) else flat_mask
    if ce_mask.any():
        ce = F.cross_entropy(flat_logits[ce_mask], flat_actions[ce_mask])
    else:
        ce = flat_logits.sum() * 0.0
    parts = {"ce": float(ce.detach()), "feedback_term": 0.0, "n_feedback": 0.0}
    if not use_feedback or fb is None:
        return ce, parts
    fb_mask = flat_mask & ((fb == 1) if mode == "positive-only" else (fb >= 0))
    n_fb = int(fb_mask.sum())
    parts["n_feedback"] = float(n_fb)
    if n_fb == 0:
        return ce, parts
    logp = F.log_softmax(flat_logits[fb_mask], dim=-1)  # (F, A)
    a = flat_actions[fb_mask]
    label = fb[fb_mask]
    best = best_action.reshape(-1).long()[fb_mask] if best_action is not None else torch.full_like(a, -1)
    logp_logged = logp.gather(1, a[:, None]).squeeze(1)
    usable_best = (best >= 0) & (best != a) & (mode == "best-action")
    logp_best = logp.gather(1, best.clamp(min=0)[:, None]).squeeze(1)
    # log(1 - pi(a)) = logsumexp over the other actions of the log-probabilities, stable even near pi(a) = 1
    others = logp.masked_fill(F.one_hot(a, A).bool(), float("-inf"))
    log_not_logged = torch.logsumexp(others, dim=1)
    term = torch.where(label == 1, -logp_logged, torch.where(usable_best, -logp_best, -log_not_logged))
    reg = term.sum() / n_fb
    parts["feedback_term"] = float(reg.detach())
    return ce + feedback_lambda * reg, parts


# --------------------------------------------------------------------------------------------------
# 6. Training
# --------------------------------------------------------------------------------------------------
def _optimizer(model: nn.Module, args: DTArgs) -> torch.optim.Optimizer:
    """AdamW with weight decay on Linear / Conv weights only (biases, norms, embeddings, positions: none)."""
    decay, no_decay = [], []
    for m in model.modules():
        for pn, p in m.named_parameters(recurse=False):
            if pn == "weight" and isinstance(m, nn.Linear | nn.Conv2d):
                decay.append(p)
            else:
                no_decay.append(p)
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.lr, betas=tuple(args.betas))  # type: ignore[arg-type]


def _check_args(args: DTArgs) -> None:
    if args.algo not in ALGOS:
        raise ValueError(f"algo must be one of {', '.join(ALGOS)}, got {args.algo!r}")
    if args.algo == "fdt" and not args.feedback:
        raise ValueError(
            "fdt needs feedback labels (--feedback FILE): make them with `python -m critwrap.zoo offline "
            "feedback --data DIR --oracle RUN_DIR`"
        )
    if args.algo != "fdt" and args.feedback:
        raise ValueError(f"{args.algo} does not use feedback labels; train fdt to use --feedback")
    if not args.out:
        raise ValueError("give the run directory to write (out / --out)")
    for name in ("epochs", "batch_size", "context_length", "n_layer", "n_head", "n_embd"):
        if int(getattr(args, name)) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(args, name)}")
    if args.feedback_lambda < 0:
        raise ValueError(f"feedback_lambda must be >= 0, got {args.feedback_lambda}")
    if args.feedback_mode not in FEEDBACK_MODES:
        raise ValueError(
            f"feedback_mode must be one of {', '.join(FEEDBACK_MODES)}, got {args.feedback_mode!r}"
        )
    if args.algo != "fdt" and args.feedback_mode != "best-action":
        raise ValueError(f"feedback_mode only applies to fdt; {args.algo} uses no feedback")


def _args_json(args: DTArgs) -> dict[str, Any]:
    d = dataclasses.asdict(args)
    if not isinstance(d["data"], str | os.PathLike):
        d["data"] = f"<{type(args.data).__name__}>"
    else:
        d["data"] = os.fspath(d["data"])
    d["betas"] = list(d["betas"])
    return d


def train(args: DTArgs) -> Path:
    """Train DT / FDT / BC on an offline dataset; writes ``args.out`` and returns its path.

    The run directory holds ``config.json`` (arguments, network, observation preprocessing, return-to-go
    scale, data summary, the environment recipe for evaluation), ``model.pt`` (a ``state_dict``, loaded
    with ``weights_only=True``), ``train_log.csv``, ``status.json`` and TensorBoard events in ``tb/``.
    """
    from tqdm.auto import tqdm

    from critwrap.zoo.runs import write_json, write_status

    _check_args(args)
    out = Path(args.out).expanduser()
    if (out / "model.pt").exists() and not args.overwrite:
        raise FileExistsError(
            f"{out} already holds a trained model; choose another --out or pass --overwrite"
        )
    out.mkdir(parents=True, exist_ok=True)
    if args.num_threads is not None:
        torch.set_num_threads(int(args.num_threads))
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    device = torch.device(args.device)

    # data and (for fdt) feedback labels
    data = OfflineData.load(args.data, feedback=args.feedback if args.algo == "fdt" else None)
    if args.algo == "fdt" and data.n_feedback == 0:
        raise DatasetError(f"the feedback file {args.feedback} holds no labels")
    obs_spec = ObsSpec.from_data(data.observations)
    rtg_scale = float(args.rtg_scale) if args.rtg_scale else float(max(np.abs(data.returns).max(), 1e-8))
    if rtg_scale <= 0:
        raise ValueError(f"rtg_scale must be > 0, got {args.rtg_scale}")
    K = int(args.context_length)
    model = DecisionTransformer(
        obs_spec,
        data.n_actions,
        K,
        max_timestep=int(data.lengths.max()),
        n_layer=args.n_layer,
        n_head=args.n_head,
        n_embd=args.n_embd,
        dropout=args.dropout,
        encoder=args.encoder,
        use_returns=args.algo != "bc",
    ).to(device)
    optimizer = _optimizer(model, args)
    lam = float(args.feedback_lambda) if args.algo == "fdt" else 0.0

    N, B = len(data), int(args.batch_size)
    steps_per_epoch = math.ceil(N / B)
    total_steps = args.epochs * steps_per_epoch if args.max_steps is None else int(args.max_steps)
    final_tokens = 2 * N * K * 3
    config: dict[str, Any] = {
        "format": RUN_FORMAT,
        "version": RUN_VERSION,
        "algo": args.algo,
        "args": _args_json(args),
        "model": model.config(),
        "obs": obs_spec.to_dict(),
        "rtg_scale": rtg_scale,
        "data": {"source": data.source, **data.summary()},
        "env": data.metadata.get("env"),
        "feedback": None,
        "parameters": int(sum(p.numel() for p in model.parameters())),
    }
    if args.algo == "fdt":
        from critwrap.feedback.oracle import FeedbackLabels

        labels = FeedbackLabels.load(args.feedback)  # type: ignore[arg-type]
        config["feedback"] = {
            "file": str(args.feedback),
            "labels": len(labels),
            "positive": labels.n_positive,
            "mode": args.feedback_mode,
            **{k: labels.metadata.get(k) for k in ("selector", "budget", "occurrences", "oracle")},
        }
    write_json(out / "config.json", config)
    status = write_status(out, "running", total_steps=total_steps, num_steps=0)

    writer = None
    if args.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"))
    log_rows: list[dict[str, float]] = []
    step, tokens, start, cpu_start = 0, 0, time.perf_counter(), time.process_time()
    bar = tqdm(
        total=total_steps, desc=f"{args.algo} seed {args.seed}", unit="step", disable=not args.progress
    )
    try:
        model.train()
        while step < total_steps:
            order = rng.permutation(N)  # each step of the data starts one window per epoch
            for b0 in range(0, N, B):
                if step >= total_steps:
                    break
                batch = data.sample_windows(order[b0 : b0 + B], K)
                obs = obs_spec.to_tensor(batch["observations"], device)
                actions = torch.as_tensor(batch["actions"], device=device)
                rtg = torch.as_tensor(batch["rtg"], device=device) / rtg_scale
                mask = torch.as_tensor(batch["mask"], device=device)
                logits = model(obs, actions, rtg, torch.as_tensor(batch["timestep"], device=device))
                loss, parts = fdt_loss(
                    logits,
                    actions,
                    mask,
                    torch.as_tensor(batch["feedback"], device=device) if lam else None,
                    torch.as_tensor(batch["best_action"], device=device) if lam else None,
                    lam,
                    mode=args.feedback_mode,
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
                lr = args.lr
                if args.lr_decay:  # minGPT's schedule, in action tokens
                    tokens += int(mask.sum())
                    if tokens < args.warmup_tokens:
                        lr = args.lr * tokens / max(1, args.warmup_tokens)
                    else:
                        progress = (tokens - args.warmup_tokens) / max(1, final_tokens - args.warmup_tokens)
                        lr = args.lr * max(0.1, 0.5 * (1.0 + math.cos(math.pi * progress)))
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                optimizer.step()
                step += 1
                bar.update(1)
                if step % args.log_interval == 0 or step == total_steps:
                    row = {"step": step, "loss": float(loss.detach()), "lr": lr, **parts}
                    log_rows.append(row)
                    bar.set_postfix(loss=f"{row['loss']:.3f}")
                    if writer is not None:
                        for key in ("loss", "ce", "feedback_term", "lr"):
                            writer.add_scalar(f"train/{key}", row[key], step)
    except BaseException as exc:
        write_status(out, "failed", error=f"{type(exc).__name__}: {exc}", previous=status, num_steps=step)
        raise
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    torch.save(model.state_dict(), out / "model.pt")
    with open(out / "train_log.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["step", "loss", "ce", "feedback_term", "n_feedback", "lr"])
        w.writeheader()
        w.writerows(log_rows)
    seconds = time.perf_counter() - start
    config["train"] = {
        "steps": step,
        "epochs": step / steps_per_epoch,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(time.process_time() - cpu_start, 2),  # this process's CPU time, all threads
        "final_loss": log_rows[-1]["loss"] if log_rows else None,
    }
    write_json(out / "config.json", config)
    write_status(out, "finished", previous=status, num_steps=step)
    return out


# --------------------------------------------------------------------------------------------------
# 7. Loading a trained run and acting
# --------------------------------------------------------------------------------------------------
@dataclass
class OfflinePolicy:
    """A trained DT / FDT / BC: the network, its run config, and how to act from a context window."""

    model: DecisionTransformer
    config: dict[str, Any]
    obs_spec: ObsSpec
    rtg_scale: float
    run_dir: Path | None = None

    @property
    def algo(self) -> str:
        return str(self.config["algo"])

    @property
    def context_length(self) -> int:
        return self.model.context_length

    @torch.inference_mode()
    def action_logits(
        self, observations: np.ndarray, actions: np.ndarray, rtg: np.ndarray, timestep: np.ndarray | int
    ) -> np.ndarray:
        """Logits of the last step's action for a batch of windows: ``observations`` (B, k, *raw),
        ``actions`` (B, k) (the last one is ignored), ``rtg`` (B, k) in reward units, first ``timestep``."""
        self.model.eval()
        device = next(self.model.parameters()).device
        obs = self.obs_spec.to_tensor(observations, device)
        B = obs.shape[0]
        t = torch.as_tensor(np.broadcast_to(np.asarray(timestep), (B,)).copy(), device=device)
        logits = self.model(
            obs,
            torch.as_tensor(actions, device=device),
            torch.as_tensor(rtg, dtype=torch.float32, device=device) / self.rtg_scale,
            t,
        )
        return logits[:, -1].cpu().numpy()  # type: ignore[no-any-return]


def load_policy(run_dir: str | os.PathLike[str], device: str = "cpu") -> OfflinePolicy:
    """Load a run written by :func:`train` (``weights_only=True``: nothing is unpickled)."""
    run = Path(run_dir).expanduser()
    cfg_path = run / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(
            f"{run} is not an offline run directory (no config.json); train one with `offline train`"
        )
    config = json.loads(cfg_path.read_text())
    if config.get("format") != RUN_FORMAT:
        raise ValueError(f"{run} is not an offline DT / FDT / BC run (format {config.get('format')!r})")
    if int(config.get("version", 0)) > RUN_VERSION:
        raise ValueError(
            f"{run} was written by a newer critwrap (version {config['version']}); upgrade critwrap"
        )
    if not (run / "model.pt").is_file():
        raise FileNotFoundError(
            f"{run} has no model.pt (status: {(run / 'status.json').read_text().strip() if (run / 'status.json').is_file() else 'unknown'})"
        )
    obs_spec = ObsSpec.from_dict(config["obs"])
    m = config["model"]
    model = DecisionTransformer(
        obs_spec,
        m["n_actions"],
        m["context_length"],
        m["max_timestep"],
        n_layer=m["n_layer"],
        n_head=m["n_head"],
        n_embd=m["n_embd"],
        dropout=m["dropout"],
        encoder=m["encoder"],
        use_returns=m["use_returns"],
    )
    model.load_state_dict(torch.load(run / "model.pt", map_location=device, weights_only=True))
    model.to(device).eval()
    return OfflinePolicy(model, config, obs_spec, float(config["rtg_scale"]), run)
