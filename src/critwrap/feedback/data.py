"""Offline data for the Decision Transformer family: recording SB3 agents, loading episodes as flat arrays.

Two halves:

* :func:`record_agents` rolls out one or several saved SB3 agents (run directories or model ``.zip``
  files) with epsilon mixing (with probability ``epsilon`` a uniformly random action replaces the
  agent's) into an :class:`~critwrap.episodes.EpisodeStore`: the DQN-replay-style data FDT trains on.
  Observations are recorded as the agent sees them (after the run's frame stacking and SB3's channel-first
  transpose), so the same agents can later act as feedback oracles on the stored observations. Each
  episode's metadata holds the agent id, its model path, the epsilon and how many actions were random;
  the store's metadata holds the environment recipe (``store.metadata["env"]``) that
  ``offline evaluate`` uses to roll policies out in the same observation pipeline.
  ``python -m critwrap.zoo record agent`` is the command line.
* :class:`OfflineData` loads an EpisodeStore, a Minari dataset (through
  :func:`critwrap.episodes.read_minari`) or a list of episodes into flat arrays (observations, actions,
  rewards, undiscounted returns-to-go, timesteps), optionally with feedback labels
  (:class:`critwrap.feedback.oracle.FeedbackLabels`) as per-step arrays, and samples context windows of
  ``K`` steps for training (:meth:`OfflineData.sample_windows`).

Example:
    >>> import numpy as np
    >>> from critwrap.episodes import Episode
    >>> from critwrap.feedback.data import OfflineData
    >>> eps = [Episode(np.zeros((4, 3), np.float32), actions=[0, 1, 1, 0], rewards=[0, 0, 1, 0])]
    >>> data = OfflineData.from_episodes(eps)
    >>> data.rtg.tolist(), data.n_actions
    ([1.0, 1.0, 1.0, 0.0], 2)
    >>> batch = data.sample_windows(np.array([0]), context_length=3)
    >>> batch["actions"].tolist(), batch["mask"].tolist()
    ([[0, 1, 1]], [[True, True, True]])
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from critwrap.episodes import Episode, EpisodeStore

if TYPE_CHECKING:
    from critwrap.feedback.oracle import FeedbackLabels

__all__ = [
    "AgentSpec",
    "DatasetError",
    "OfflineData",
    "episode_ids",
    "load_episodes",
    "make_env_from_spec",
    "record_agents",
    "resolve_agent",
]


class DatasetError(ValueError):
    """A dataset cannot be used as asked (no actions or rewards, continuous actions, empty, ...)."""


# --------------------------------------------------------------------------------------------------
# Opening episode sources
# --------------------------------------------------------------------------------------------------


def load_episodes(
    source: str | os.PathLike[str] | EpisodeStore | Iterable[Episode],
) -> tuple[list[Episode], list[str], dict[str, Any]]:
    """Episodes of an EpisodeStore folder (or object), a Minari dataset or an iterable of episodes.

    A string or path is an EpisodeStore when it holds ``store.json``; ``minari:ID`` (or a folder with
    Minari's ``data/`` sub-folder) is read with :func:`critwrap.episodes.read_minari` (never downloaded).

    Returns:
        ``(episodes, ids, store_metadata)``: ids are the store's episode ids, else ``ep-000000``, ... in
        order; store metadata is ``{}`` for sources without one.
    """
    from critwrap.episodes import read_minari

    if isinstance(source, EpisodeStore):
        store = source
    elif isinstance(source, str | os.PathLike):
        text = os.fspath(source)
        if text.startswith("minari:"):
            eps = list(read_minari(text[len("minari:") :]))
            return eps, episode_ids(len(eps)), {"source": text, "env": _minari_env(eps)}
        path = Path(text).expanduser()
        if (path / "store.json").is_file():
            store = EpisodeStore(path, create=False)
        elif (path / "data").is_dir() or (path / "metadata.json").is_file():
            eps = list(read_minari(path))
            return eps, episode_ids(len(eps)), {"source": f"minari:{path}", "env": _minari_env(eps)}
        elif not path.exists():
            raise FileNotFoundError(
                f"no dataset at {path}: give an EpisodeStore folder (with store.json, e.g. written by "
                "`python -m critwrap.zoo record agent`), a Minari dataset folder, or minari:DATASET_ID"
            )
        else:
            raise DatasetError(
                f"{path} is neither an EpisodeStore (no store.json) nor a Minari dataset (no data/ folder)"
            )
    else:
        eps = list(source)
        return eps, episode_ids(len(eps)), {}
    ids = store.ids()
    return [store.get(i) for i in ids], ids, store.metadata


def _minari_env(eps: Sequence[Episode]) -> dict[str, Any] | None:
    env_id = eps[0].metadata.get("env_id") if eps else None
    return {"env": env_id, "wrappers": [], "env_kwargs": {}, "preprocess": False} if env_id else None


def episode_ids(n: int) -> list[str]:
    """The ids given to the episodes of a source without its own: ``ep-000000``, ``ep-000001``, ..."""
    return [f"ep-{i:06d}" for i in range(n)]


# --------------------------------------------------------------------------------------------------
# Flat arrays for training
# --------------------------------------------------------------------------------------------------


def _discrete_actions(ep: Episode, i: int, ep_id: str) -> np.ndarray:
    assert ep.actions is not None
    a = np.asarray(ep.actions)
    if a.ndim > 1:
        if int(np.prod(a.shape[1:])) != 1:
            raise DatasetError(
                f"episode {ep_id} has actions of shape {a.shape}: the Decision Transformer here handles "
                "discrete actions (one integer per step)"
            )
        a = a.reshape(len(a))
    if a.size and (not np.all(np.isfinite(a)) or not np.all(a == np.round(a)) or a.min() < 0):
        raise DatasetError(
            f"episode {ep_id} has non-integer or negative actions; the Decision Transformer here handles "
            "discrete actions 0..n-1"
        )
    return a.astype(np.int64)


@dataclass
class OfflineData:
    """Episodes as flat per-step arrays (``N`` steps over ``E`` episodes), the layout training samples from.

    Attributes:
        observations: (N, ...) as stored (uint8 images stay uint8).
        actions: (N,) int64; rewards: (N,) float32; rtg: (N,) float32 undiscounted return-to-go within
            the episode; timesteps: (N,) int64 step index within the episode.
        starts, lengths: (E,) first flat index and length of each episode; ids: episode ids.
        feedback: (N,) int8, 1 / 0 where a feedback label exists, -1 elsewhere.
        best_action: (N,) int64, the best-return-to-go action at labelled steps (-1: none).
        n_actions: number of discrete actions; returns: (E,) episode returns; metadata: store metadata.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    rtg: np.ndarray
    timesteps: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    ids: list[str]
    n_actions: int
    returns: np.ndarray
    feedback: np.ndarray
    best_action: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str | None = None

    # ---- construction ----------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        source: str | os.PathLike[str] | EpisodeStore | Iterable[Episode],
        *,
        feedback: FeedbackLabels | str | os.PathLike[str] | None = None,
        n_actions: int | None = None,
    ) -> OfflineData:
        """Load a dataset (see :func:`load_episodes`) and, optionally, feedback labels (object or file).

        Raises:
            DatasetError: episodes without actions or rewards, non-discrete actions, no episodes.
            critwrap.feedback.oracle.FeedbackMismatchError: labels for states not in this dataset.
        """
        eps, ids, meta = load_episodes(source)
        src = os.fspath(source) if isinstance(source, str | os.PathLike) else None
        if isinstance(source, EpisodeStore):
            src = str(source.root)
        data = cls.from_episodes(eps, ids=ids, metadata=meta, n_actions=n_actions, source=src)
        if feedback is not None:
            data.attach_feedback(feedback)
        return data

    @classmethod
    def from_episodes(
        cls,
        episodes: Sequence[Episode],
        *,
        ids: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        n_actions: int | None = None,
        source: str | None = None,
    ) -> OfflineData:
        """Flatten episodes (each needs actions and rewards; actions discrete)."""
        if len(episodes) == 0:
            raise DatasetError("the dataset holds no episodes")
        if (metadata or {}).get("record") == "frames":
            raise DatasetError(
                f"{source or 'the dataset'} holds rendered frames (`record agent --record frames`, data for a "
                "critical-state detector), not the observations the agents acted on; offline RL and feedback "
                "need a store recorded with --record observations (the default)"
            )
        ids = list(ids) if ids is not None else episode_ids(len(episodes))
        if len(ids) != len(episodes):
            raise ValueError(f"got {len(ids)} ids for {len(episodes)} episodes")
        shape = None
        obs, acts, rews, rtgs, ts = [], [], [], [], []
        for i, ep in enumerate(episodes):
            if not isinstance(ep, Episode):
                raise TypeError(f"episode {i} is a {type(ep).__name__}, not a critwrap.episodes.Episode")
            missing = [n for n, v in (("actions", ep.actions), ("rewards", ep.rewards)) if v is None]
            if missing:
                raise DatasetError(
                    f"episode {ids[i]} has no {' and '.join(missing)}: offline RL needs per-step actions and "
                    "rewards. Record the data with `python -m critwrap.zoo record agent` (or RecordEpisodes), "
                    "not from videos"
                )
            if shape is None:
                shape = ep.observations.shape[1:]
            elif ep.observations.shape[1:] != shape:
                raise DatasetError(
                    f"episode {ids[i]} has observations of shape {ep.observations.shape[1:]}, the first "
                    f"episode {shape}; all episodes must share one observation shape"
                )
            assert ep.rewards is not None
            r = np.asarray(ep.rewards, dtype=np.float64)
            obs.append(ep.observations)
            acts.append(_discrete_actions(ep, i, ids[i]))
            rews.append(r)
            rtgs.append(np.cumsum(r[::-1])[::-1])
            ts.append(np.arange(len(ep), dtype=np.int64))
        lengths = np.asarray([len(a) for a in acts], dtype=np.int64)
        actions = np.concatenate(acts)
        max_action = int(actions.max()) + 1 if actions.size else 1
        if n_actions is None:
            meta_n = (metadata or {}).get("n_actions")
            n_actions = int(meta_n) if meta_n is not None else max_action
        if max_action > n_actions:
            raise DatasetError(f"the data has action {max_action - 1} but n_actions={n_actions}")
        n = int(lengths.sum())
        return cls(
            observations=np.concatenate(obs),
            actions=actions,
            rewards=np.concatenate(rews).astype(np.float32),
            rtg=np.concatenate(rtgs).astype(np.float32),
            timesteps=np.concatenate(ts),
            starts=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
            lengths=lengths,
            ids=ids,
            n_actions=int(n_actions),
            returns=np.asarray([float(np.sum(r)) for r in rews], dtype=np.float64),
            feedback=np.full(n, -1, dtype=np.int8),
            best_action=np.full(n, -1, dtype=np.int64),
            metadata=dict(metadata or {}),
            source=source,
        )

    def attach_feedback(self, labels: FeedbackLabels | str | os.PathLike[str]) -> None:
        """Put feedback labels into the per-step ``feedback`` / ``best_action`` arrays (checked first)."""
        from critwrap.feedback.oracle import FeedbackLabels

        if not isinstance(labels, FeedbackLabels):
            labels = FeedbackLabels.load(labels)
        flat = labels.flat_indices(self)  # raises FeedbackMismatchError on labels outside this dataset
        self.feedback[:] = -1
        self.best_action[:] = -1
        self.feedback[flat] = labels.label.astype(np.int8)
        self.best_action[flat] = labels.best_action

    # ---- queries ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.actions)

    @property
    def n_episodes(self) -> int:
        return len(self.lengths)

    @property
    def episode_of(self) -> np.ndarray:
        """(N,) episode index of every step."""
        return np.repeat(np.arange(self.n_episodes), self.lengths)

    @property
    def observation_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.observations.shape[1:])

    @property
    def n_feedback(self) -> int:
        return int((self.feedback >= 0).sum())

    def summary(self) -> dict[str, Any]:
        fb = self.feedback[self.feedback >= 0]
        return {
            "episodes": self.n_episodes,
            "steps": len(self),
            "observation_shape": list(self.observation_shape),
            "observation_dtype": str(self.observations.dtype),
            "n_actions": self.n_actions,
            "return_min": float(self.returns.min()),
            "return_mean": float(self.returns.mean()),
            "return_max": float(self.returns.max()),
            "max_length": int(self.lengths.max()),
            "feedback": len(fb),
            "positive_feedback": int((fb == 1).sum()),
        }

    # ---- sampling --------------------------------------------------------------------------------
    def sample_windows(self, indices: np.ndarray, context_length: int) -> dict[str, np.ndarray]:
        """Windows of ``context_length`` steps, one per flat index in ``indices``.

        A window starts at the index and is moved back so that it ends inside its episode (as the official
        DT / FDT datasets do); episodes shorter than the context are right-padded, with ``mask`` False on
        the padding. Returns arrays ``observations`` (B, K, ...), ``actions``, ``rtg``, ``rewards``,
        ``feedback``, ``best_action``, ``mask`` (B, K) and ``timestep`` (B,) (the first step's index).
        """
        k = int(context_length)
        if k < 1:
            raise ValueError(f"context_length must be >= 1, got {context_length}")
        idx = np.asarray(indices, dtype=np.int64)
        ep = self.episode_of[idx]
        ep_start, ep_len = self.starts[ep], self.lengths[ep]
        start = np.maximum(np.minimum(idx, ep_start + ep_len - k), ep_start)
        offs = np.arange(k)
        pos = start[:, None] + offs[None, :]
        mask = offs[None, :] < (ep_start + ep_len - start)[:, None]
        pos = np.where(mask, pos, start[:, None])  # padding repeats the first step, then is masked
        obs = self.observations[pos]
        return {
            "observations": obs,
            "actions": np.where(mask, self.actions[pos], 0),
            "rtg": np.where(mask, self.rtg[pos], 0.0).astype(np.float32),
            "rewards": np.where(mask, self.rewards[pos], 0.0).astype(np.float32),
            "feedback": np.where(mask, self.feedback[pos], -1).astype(np.int64),
            "best_action": np.where(mask, self.best_action[pos], -1),
            "mask": mask,
            "timestep": self.timesteps[start],
        }


# --------------------------------------------------------------------------------------------------
# Recording SB3 agents (``python -m critwrap.zoo record agent``)
# --------------------------------------------------------------------------------------------------


@dataclass
class AgentSpec:
    """A saved SB3 agent to roll out: a run directory or a model file (with its algorithm and env)."""

    path: str
    run_dir: str | None
    model_path: str | None
    algo: str | None
    env: str | None


def resolve_agent(
    path: str | os.PathLike[str], *, algo: str | None = None, env: str | None = None
) -> AgentSpec:
    """Find the run directory of a model: ``RUN``, ``RUN/model.zip`` or ``RUN/checkpoints/rl_model_*.zip``;
    a zip outside any run directory needs ``algo`` and ``env``."""
    p = Path(path).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise FileNotFoundError(
                f"{p} is a folder without config.json: not a run directory of `zoo train`"
            )
        return AgentSpec(str(p), str(p), None, algo, env)
    if not p.is_file():
        raise FileNotFoundError(f"no model at {p}: give a run directory or a model .zip")
    for candidate in (p.parent, p.parent.parent):
        if (candidate / "config.json").is_file():
            return AgentSpec(str(p), str(candidate), str(p), algo, env)
    if algo is None or env is None:
        raise ValueError(
            f"{p} is not inside a run directory (no config.json beside it): give --algo and --env for it"
        )
    return AgentSpec(str(p), None, str(p), algo, env)


def _env_recipe(loaded: Any) -> dict[str, Any]:
    cfg = loaded.config
    skip = set(cfg.get("eval_skip_wrappers", []))
    hp = cfg.get("hyperparams", {})
    return {
        "env": cfg["env"],
        "wrappers": [dict(w) for w in cfg.get("wrappers", []) if w["name"] not in skip],
        "env_kwargs": dict(hp.get("env_kwargs") or {}),
        "frame_stack": hp.get("frame_stack"),
        "normalize": hp.get("normalize"),
        "vecnormalize_path": None if loaded.vecnormalize_path is None else str(loaded.vecnormalize_path),
    }


def make_env_from_spec(spec: Mapping[str, Any], *, n_envs: int, seed: int | None) -> Any:
    """The SB3 VecEnv of an environment recipe (``store.metadata["env"]``): ``critwrap.make`` with its
    wrappers and env kwargs (``training=False``), then frame stacking / VecNormalize / channel-first
    transpose as the agents that recorded the data saw it."""
    from critwrap.zoo.common import make_vec_env, wrap_vec_env

    if not spec or not spec.get("env"):
        raise ValueError(
            "no environment recipe: the dataset's metadata has no 'env' entry (it was not written by "
            "`record agent`); pass the environment explicitly (--env)"
        )
    venv = make_vec_env(
        str(spec["env"]),
        n_envs=n_envs,
        seed=seed,
        training=False,
        wrappers=[(w["name"], dict(w.get("kwargs") or {})) for w in spec.get("wrappers", [])],
        env_kwargs=spec.get("env_kwargs") or None,
    )
    return wrap_vec_env(
        venv,
        frame_stack=spec.get("frame_stack"),
        normalize=spec.get("normalize"),
        training=False,
        vecnormalize_path=spec.get("vecnormalize_path"),
    )


def record_agents(
    models: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    episodes: int,
    epsilon: float | Sequence[float] = 0.1,
    env: str | None = None,
    algo: str | None = None,
    seed: int = 0,
    n_envs: int = 8,
    deterministic: bool = True,
    info_keys: Sequence[str] | None = None,
    progress: bool = True,
    append: bool = False,
    device: str = "cpu",
    record: str = "observations",
    frame_size: Any = None,
) -> EpisodeStore:
    """Roll out each agent for ``episodes`` episodes with epsilon mixing and write them to an EpisodeStore.

    Args:
        models: run directories or model ``.zip`` files (checkpoints inside a run directory find it).
        out: the EpisodeStore folder (must be empty unless ``append``).
        episodes: episodes per agent.
        epsilon: probability of replacing the agent's action by a uniformly random one; one value for all
            agents or one per agent.
        env: the environment; must match the runs' (required for a bare ``.zip``).
        algo: algorithm of bare ``.zip`` files.
        seed: env ``i`` of agent ``j`` is seeded ``seed + 1000 * j + i``; the epsilon draws use ``seed + j``.
        n_envs: parallel envs per agent (actions are predicted for all of them in one batch).
        deterministic: agents act greedily (SB3 ``deterministic=True``) before epsilon mixing.
        info_keys: per-step info values to record (default: ``lives`` when the env reports it).
        record: ``"observations"`` (what the agent sees; offline RL data) or ``"frames"``: the env's
            rendered RGB frame of each state instead (``render_mode="rgb_array"``), the data a
            critical-state detector needs for a victim whose observations are vectors (``zoo attack
            --frames render``). A frames store cannot be used as offline RL data.
        frame_size: with ``record="frames"``, resize each frame to this ``H`` or ``(H, W)`` (area
            averaging; the same as ``zoo attack --frames render:H[xW]``).
    """
    from tqdm.auto import tqdm

    from critwrap.zoo.common import load_run

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if record not in ("observations", "frames"):
        raise ValueError(f"record must be 'observations' or 'frames', got {record!r}")
    frames = record == "frames"
    size = None
    if frame_size is not None:
        from critwrap.attack.protocols import parse_size

        if not frames:
            raise ValueError("frame_size (--frame-size) resizes rendered frames: use it with record='frames'")
        size = parse_size(frame_size)
    if not models:
        raise ValueError("give at least one model (--model RUN_DIR_OR_ZIP)")
    eps_list = (
        [float(epsilon)] * len(models) if isinstance(epsilon, int | float) else [float(e) for e in epsilon]
    )
    if len(eps_list) == 1:
        eps_list = eps_list * len(models)
    if len(eps_list) != len(models):
        raise ValueError(f"give one --epsilon or one per model: got {len(eps_list)} for {len(models)} models")
    for e in eps_list:
        if not 0.0 <= e <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {e}")
    specs = [resolve_agent(m, algo=algo, env=env) for m in models]
    store_root = Path(out).expanduser()
    if (
        not append
        and (store_root / "manifest.jsonl").is_file()
        and (store_root / "manifest.jsonl").stat().st_size
    ):
        raise FileExistsError(f"{store_root} already holds episodes; choose a new --out folder (or --append)")
    store = EpisodeStore(store_root, create=True)
    if append and len(store) and store.metadata.get("record", "observations") != record:
        raise ValueError(
            f"{store_root} holds {store.metadata.get('record', 'observations')}; --append would add {record} to it"
        )
    recipe: dict[str, Any] | None = None
    obs_shape: tuple[int, ...] | None = None
    agents_meta: list[dict[str, Any]] = list(store.metadata.get("agents", [])) if append else []
    total = episodes * len(specs)
    bar = tqdm(total=total, desc="record agent", unit="episode", disable=not progress)
    start_time = time.perf_counter()
    try:
        for j, spec in enumerate(specs):
            loaded = load_run(
                spec.run_dir, model_path=spec.model_path, algo=spec.algo, env=spec.env, device=device
            )
            if env is not None and spec.run_dir is not None and loaded.config["env"] != env:
                raise ValueError(
                    f"--env {env} does not match the environment {loaded.config['env']} of {spec.path}"
                )
            this_recipe = _env_recipe(loaded)
            if recipe is None:
                recipe = this_recipe
            elif {k: v for k, v in this_recipe.items() if k != "vecnormalize_path"} != {
                k: v for k, v in recipe.items() if k != "vecnormalize_path"
            }:
                raise ValueError(
                    f"{spec.path} sees its environment through another pipeline ({this_recipe}) than the first "
                    f"model ({recipe}); record agents of one environment setup per store"
                )
            n = min(int(n_envs), episodes)
            venv = loaded.make_env(
                seed=seed + 1000 * j, n_envs=n, render_mode="rgb_array" if frames else None
            )
            space = venv.action_space
            if not hasattr(space, "n"):
                raise DatasetError(f"{spec.path}: the action space {space} is not discrete")
            shape = tuple(venv.observation_space.shape)
            if frames:
                venv.reset()
                image = venv.get_images()[0]
                if not isinstance(image, np.ndarray):
                    raise ValueError(
                        f"{spec.path}: {loaded.config['env']} rendered {type(image).__name__}, not an RGB array; "
                        "record='frames' needs an env that renders rgb_array frames"
                    )
                if size is not None:
                    from critwrap.attack.protocols import resize_frame

                    image = resize_frame(image, size)
                shape = tuple(image.shape)
                # the probe's reset used the seeds: the episodes start from them again
                venv.seed(seed + 1000 * j)
            if obs_shape is None:
                obs_shape = shape
            elif shape != obs_shape:
                raise ValueError(
                    f"{spec.path} sees observations of shape {shape}, the first model {obs_shape}"
                )
            agent_id = f"agent-{len(agents_meta)}"
            agents_meta.append(
                {
                    "id": agent_id,
                    "path": spec.path,
                    "model": str(loaded.model_path),
                    "algo": loaded.config["algo"],
                    "epsilon": eps_list[j],
                    "episodes": episodes,
                    "deterministic": deterministic,
                }
            )
            _roll_out(
                loaded.model,
                venv,
                store,
                episodes=episodes,
                epsilon=eps_list[j],
                rng=np.random.default_rng(seed + j),
                n_actions=int(space.n),
                deterministic=deterministic,
                info_keys=info_keys,
                metadata={
                    "agent": agent_id,
                    "agent_index": len(agents_meta) - 1,
                    "model": str(loaded.model_path),
                    "algo": loaded.config["algo"],
                    "epsilon": eps_list[j],
                    "env_id": loaded.config["env"],
                    "seed": seed + 1000 * j,
                    "recorder": "critwrap.zoo record agent",
                },
                bar=bar,
                frames=frames,
                frame_size=size,
            )
            venv.close()
            store.set_metadata(
                {
                    "recorder": "critwrap.zoo record agent",
                    "env": recipe,
                    "n_actions": int(space.n),
                    "observation_shape": list(obs_shape),
                    "record": record,
                    "frame_size": None if size is None else list(size),
                    "agents": agents_meta,
                    "seed": seed,
                    "seconds": round(time.perf_counter() - start_time, 2),
                },
                merge=True,
            )
    finally:
        bar.close()
    return store


def _roll_out(
    model: Any,
    venv: Any,
    store: EpisodeStore,
    *,
    episodes: int,
    epsilon: float,
    rng: np.random.Generator,
    n_actions: int,
    deterministic: bool,
    info_keys: Sequence[str] | None,
    metadata: dict[str, Any],
    bar: Any,
    frames: bool = False,
    frame_size: tuple[int, int] | None = None,
) -> None:
    n = venv.num_envs
    targets = np.array([(episodes + i) // n for i in range(n)])  # SB3 evaluate_policy's split: no bias
    done_count = np.zeros(n, dtype=np.int64)
    obs = venv.reset()
    buf: list[dict[str, list[Any]]] = [{"obs": [], "act": [], "rew": [], "rand": []} for _ in range(n)]
    keys: list[str] | None = None if info_keys is None else list(info_keys)
    infos_buf: list[dict[str, list[Any]]] = [{} for _ in range(n)]
    while (done_count < targets).any():
        actions, _ = model.predict(obs, deterministic=deterministic)
        actions = np.asarray(actions).reshape(n).astype(np.int64)
        random_mask = rng.random(n) < epsilon
        actions = np.where(random_mask, rng.integers(0, n_actions, size=n), actions)
        images = venv.get_images() if frames else None  # the frame of each current state
        if images is not None and frame_size is not None:
            from critwrap.attack.protocols import resize_frame

            images = [resize_frame(im, frame_size) for im in images]
        new_obs, rewards, dones, infos = venv.step(actions)
        if keys is None:
            keys = ["lives"] if "lives" in infos[0] else []
        for i in range(n):
            if done_count[i] >= targets[i]:
                continue
            b = buf[i]
            b["obs"].append(np.array(images[i] if images is not None else obs[i], copy=True))
            b["act"].append(int(actions[i]))
            b["rew"].append(float(rewards[i]))
            b["rand"].append(bool(random_mask[i]))
            for key in keys:
                if key not in infos[i]:
                    raise KeyError(
                        f"info key {key!r} is missing at a step; the info has keys {sorted(infos[i])}"
                    )
                infos_buf[i].setdefault(key, []).append(np.asarray(infos[i][key]))
            if dones[i]:
                truncated = bool(infos[i].get("TimeLimit.truncated", False))
                final = None if frames else infos[i].get("terminal_observation")
                ep = Episode(
                    observations=np.stack(b["obs"]),
                    actions=np.asarray(b["act"], dtype=np.int64),
                    rewards=np.asarray(b["rew"], dtype=np.float64),
                    infos={k: np.stack(v) for k, v in infos_buf[i].items()},
                    metadata={
                        **metadata,
                        "random_actions": int(np.sum(b["rand"])),
                        "terminated": not truncated,
                        "truncated": truncated,
                    },
                    final_observation=None if final is None else np.asarray(final),
                )
                store.append(ep)
                bar.update(1)
                done_count[i] += 1
                buf[i] = {"obs": [], "act": [], "rew": [], "rand": []}
                infos_buf[i] = {}
        obs = new_obs
